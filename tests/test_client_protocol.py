"""The client protocol against a scripted server: login, replies, events."""

from __future__ import annotations

import datetime

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.known_servers import FingerprintChanged
from partypool.client.protocol import (
    ChatClientProtocol,
    ChatListener,
    LoginTimeout,
    NoReply,
    NotPartyPool,
    ServerAuthenticationError,
    ServerError,
    WeakIterations,
)
from tests.client_fakes import PASSKEY, ScriptedServer, b64, certificate, make_client


class RecordingListener(ChatListener):
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def chat(self, name: str, text: str) -> None:
        self.events.append(("chat", name, text))

    def joined(self, name: str) -> None:
        self.events.append(("joined", name))

    def left(self, name: str, reason: str) -> None:
        self.events.append(("left", name, reason))

    def notice(self, text: str) -> None:
        self.events.append(("notice", text))

    def shutdown(self, seconds: int, text: str) -> None:
        self.events.append(("shutdown", seconds, text))

    def error(self, code: str, text: str) -> None:
        self.events.append(("error", code, text))

    def refused(self, said: str, code: str, text: str) -> None:
        self.events.append(("refused", said, code, text))

    def private(self, name: str, text: str) -> None:
        self.events.append(("private", name, text))

    def requested(self, request_id: int, name: str, text: str) -> None:
        self.events.append(("requested", request_id, name, text))

    def bye(self, reason: str) -> None:
        self.events.append(("bye", reason))


class LoginTests(SynchronousTestCase):
    def test_login(self) -> None:
        """A full SCRAM exchange with username ``chat`` and no channel
        binding fires logged_in with the name from HELLO."""
        server = ScriptedServer(make_client(PASSKEY))
        server.log_in()
        self.assertTrue(server.client_first.startswith("n,,n=chat,r="))
        self.assertEqual(self.successResultOf(server.proto.logged_in), "Test Pool")
        self.assertFalse(server.transport.disconnecting)

    def test_bad_server_signature(self) -> None:
        """A server that cannot prove it knows the passkey is dropped."""
        server = ScriptedServer(make_client(PASSKEY))
        server.log_in(server_final="v=" + b64("not the signature"))
        self.failureResultOf(server.proto.logged_in, ServerAuthenticationError)
        self.assertTrue(server.transport.disconnecting)

    def test_wrong_passkey(self) -> None:
        """``ERR auth-failed`` fails the login with the server's code."""
        server = ScriptedServer(make_client("not the passkey"))
        server.log_in()
        failure = self.failureResultOf(server.proto.logged_in, ServerError)
        self.assertEqual(failure.value.code, "auth-failed")
        self.assertTrue(server.transport.disconnecting)

    def test_other_protocol(self) -> None:
        """A greeting for another protocol version sends nothing."""
        server = ScriptedServer(make_client(PASSKEY))
        server.send("HELLO partypool/2 Future")
        self.failureResultOf(server.proto.logged_in, ServerAuthenticationError)
        self.assertEqual(server.received(), [])

    def test_refused_certificate_sends_nothing(self) -> None:
        """When the peer check refuses the certificate, HELLO gets no AUTH."""

        def refuse(certificate: object) -> None:
            raise FingerprintChanged("h", 1, "AA", "BB", "reset")

        server = ScriptedServer(make_client(PASSKEY, check_peer=refuse))
        server.transport.getPeerCertificate = lambda: None
        server.proto.handshakeCompleted()
        server.send("HELLO partypool/1 Test Pool")
        self.failureResultOf(server.proto.logged_in, FingerprintChanged)
        self.assertEqual(server.received(), [])
        self.assertTrue(server.transport.disconnecting)

    def test_unchecked_certificate_sends_nothing(self) -> None:
        """HELLO before the certificate was checked is refused (the check
        must come first)."""
        server = ScriptedServer(make_client(PASSKEY, check_peer=print))
        server.send("HELLO partypool/1 Test Pool")
        self.failureResultOf(server.proto.logged_in, ServerAuthenticationError)
        self.assertEqual(server.received(), [])


class ChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.listener = RecordingListener()
        self.server = ScriptedServer(make_client(PASSKEY, self.listener))
        self.server.log_in()
        self.proto = self.server.proto
        self.server.received()

    def test_nick(self) -> None:
        """A refused name fails with the server's reason; an accepted one
        fires with the name as the server spells it."""
        taken = self.proto.nick("bob")
        self.server.send("ERR nick-taken the name bob is taken")
        self.assertEqual(
            self.failureResultOf(taken, ServerError).value.code, "nick-taken"
        )
        accepted = self.proto.nick("Bob")
        self.server.send("OK NICK Bob")
        self.assertEqual(self.successResultOf(accepted), "Bob")
        self.assertEqual(self.proto.name, "Bob")
        self.assertEqual(self.server.received(), ["NICK bob", "NICK Bob"])

    def test_replies_match_by_kind(self) -> None:
        """Replies find their request even when they arrive out of order
        and an unrelated ERR comes between."""
        self.proto.say("hello there")
        online = self.proto.online()
        ip = self.proto.ip()
        request = self.proto.request("more snacks")
        self.server.send(
            "ERR rate-limited slow down",
            "IP 127.0.0.1",
            "ONLINE 2 alice bob",
            "OK REQUEST 7",
        )
        self.assertEqual(self.successResultOf(online), ["alice", "bob"])
        self.assertEqual(self.successResultOf(ip), "127.0.0.1")
        self.assertEqual(self.successResultOf(request), 7)
        self.assertEqual(self.listener.events, [("error", "rate-limited", "slow down")])
        self.assertEqual(
            self.server.received(),
            ["SAY hello there", "ONLINE", "IP", "REQUEST more snacks"],
        )

    def test_request_failed(self) -> None:
        """``ERR request-failed`` fails the pending request."""
        request = self.proto.request("x")
        self.server.send("ERR request-failed database is locked")
        self.failureResultOf(request, ServerError)
        self.assertEqual(self.listener.events, [])

    def test_events(self) -> None:
        """Server events reach the listener with their free text intact."""
        self.server.send(
            "CHAT bob hi  <b>there</b>",
            "JOINED carol",
            "LEFT carol quit: off to bed",
            "NOTICE pizza is here",
            "SHUTDOWN 30 maintenance window",
            "SOMETHING-NEW from a later version",
            "BYE removed by admin",
        )
        self.assertEqual(
            self.listener.events,
            [
                ("chat", "bob", "hi  <b>there</b>"),
                ("joined", "carol"),
                ("left", "carol", "quit: off to bed"),
                ("notice", "pizza is here"),
                ("shutdown", 30, "maintenance window"),
                ("bye", "removed by admin"),
            ],
        )

    def test_says_bounded_without_clock(self) -> None:
        """Without a clock, only the latest SAYs are remembered."""
        for i in range(300):
            self.proto.say(f"line {i}")
        self.assertEqual(len(self.proto._sent), 256)

    def test_keepalive(self) -> None:
        """A server PING is answered with its token."""
        self.server.send("PING abc123")
        self.assertEqual(self.server.received(), ["PONG abc123"])

    def test_connection_lost(self) -> None:
        """Losing the connection fails pending requests and fires done with
        the BYE reason (None without one); later requests fail at once."""
        online = self.proto.online()
        self.server.send("BYE server stopping")
        self.server.lose()
        self.failureResultOf(online)
        self.assertEqual(self.successResultOf(self.proto.done), "server stopping")
        self.failureResultOf(self.proto.ip(), ConnectionDone)

    def test_lost_without_bye(self) -> None:
        self.server.lose()
        self.assertIsNone(self.successResultOf(self.proto.done))


class MatchingTests(SynchronousTestCase):
    """Replies are matched to the lines sent, in order, with a clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.listener = RecordingListener()
        self.proto = make_client(PASSKEY, self.listener, clock=self.clock)
        self.server = ScriptedServer(self.proto)
        self.server.log_in()
        self.server.received()
        self.clock.advance(10)  # a full pacing bucket

    def test_err_answers_the_request_it_belongs_to(self) -> None:
        """An ERR for a REQUEST fails that REQUEST (not the listener), and
        the next OK REQUEST answers the next REQUEST, not the failed one."""
        first = self.proto.request("too long for this server")
        self.server.send("ERR text-too-long text is longer than 10 characters")
        failure = self.failureResultOf(first, ServerError)
        self.assertEqual(failure.value.code, "text-too-long")
        second = self.proto.request("snacks")
        self.server.send("OK REQUEST 5")
        self.assertEqual(self.successResultOf(second), 5)
        self.assertEqual(self.listener.events, [])

    def test_request_checked_locally(self) -> None:
        """An empty or over-long REQUEST fails at once and is not sent."""
        too_long = self.proto.request("x" * 1001)
        self.assertEqual(
            self.failureResultOf(too_long, ServerError).value.code, "text-too-long"
        )
        empty = self.proto.request(" \x1b ")
        self.assertEqual(
            self.failureResultOf(empty, ServerError).value.code, "bad-syntax"
        )
        self.assertNoResult(self.proto.request("x" * 1000))
        self.assertEqual(self.server.received(), ["REQUEST " + "x" * 1000])

    def test_refused_say_goes_to_listener(self) -> None:
        """An ERR while a SAY is the oldest line is the SAY's refusal; the
        request after it still gets its own reply."""
        self.proto.say("x" * 3000)
        online = self.proto.online()
        self.server.send("ERR text-too-long too long", "ONLINE 1 alice")
        self.assertEqual(self.successResultOf(online), ["alice"])
        self.assertEqual(
            self.listener.events,
            [("refused", "x" * 3000, "text-too-long", "too long")],
        )

    def test_refusal_names_the_message_refused(self) -> None:
        """Newcomer 2, finding 11: the listener learns which message was
        not delivered (not just the server's reason), for each refusal."""
        self.proto.say("first")
        online = self.proto.online()
        self.proto.say("second")
        self.proto.say("third")
        self.server.send("ONLINE 1 alice", "ERR muted you are muted for another 52 s")
        self.successResultOf(online)
        self.server.send("ERR text-too-long text is longer than 2000 characters")
        self.assertEqual(
            self.listener.events,
            [
                ("refused", "second", "muted", "you are muted for another 52 s"),
                (
                    "refused",
                    "third",
                    "text-too-long",
                    "text is longer than 2000 characters",
                ),
            ],
        )

    def test_accepted_says_leave_the_queue(self) -> None:
        """A reply shows the SAYs before it were accepted: a later ERR
        belongs to the line after them."""
        self.proto.say("hello")
        ip = self.proto.ip()
        self.server.send("IP 10.0.0.1")
        self.assertEqual(self.successResultOf(ip), "10.0.0.1")
        nick = self.proto.nick("bob")
        self.server.send("ERR nick-taken taken")
        self.assertEqual(
            self.failureResultOf(nick, ServerError).value.code, "nick-taken"
        )
        self.assertEqual(self.listener.events, [])

    def test_stored_request_answered_late(self) -> None:
        """OK REQUEST may come after replies to later lines (storing takes
        time); an ERR meanwhile belongs to a later line, not to it."""
        request = self.proto.request("snacks")
        ip = self.proto.ip()
        self.server.send("IP 10.0.0.1")
        self.proto.say("x" * 3000)
        self.server.send("ERR text-too-long too long")
        self.assertNoResult(request)
        self.server.send("OK REQUEST 3")
        self.assertEqual(self.successResultOf(request), 3)
        self.assertEqual(self.successResultOf(ip), "10.0.0.1")
        self.assertEqual(
            self.listener.events,
            [("refused", "x" * 3000, "text-too-long", "too long")],
        )

    def test_dropped_lines_time_out(self) -> None:
        """ERR rate-limited goes to the listener; the dropped lines fail
        with NoReply after the timeout instead of waiting forever, and
        later replies still find their own requests."""
        online = self.proto.online()
        ping = self.proto.ping("t1")
        self.server.send("ERR rate-limited slow down", "PONG t1")
        self.assertEqual(self.successResultOf(ping), "t1")
        self.assertNoResult(online)
        self.clock.advance(15)
        self.failureResultOf(online, NoReply)
        ip = self.proto.ip()
        self.server.send("IP 10.0.0.1")
        self.assertEqual(self.successResultOf(ip), "10.0.0.1")
        self.assertEqual(self.listener.events, [("error", "rate-limited", "slow down")])

    def test_slow_store_reply_not_misplaced(self) -> None:
        """A validated REQUEST that times out still takes its late reply,
        so the next REQUEST gets its own."""
        late = self.proto.request("snacks")
        ip = self.proto.ip()
        self.server.send("IP 10.0.0.1")
        self.successResultOf(ip)
        self.clock.advance(15)
        self.failureResultOf(late, NoReply)
        second = self.proto.request("drinks")
        self.server.send("OK REQUEST 1", "OK REQUEST 2")
        self.assertEqual(self.successResultOf(second), 2)

    def test_quit_waits_for_the_answers_due(self) -> None:
        """Newcomer 2, finding 10: QUIT goes out only once every request
        sent before it has its answer (the server closes on QUIT); the
        messages sent before it go first and hold nothing up."""
        history = self.proto.history(3)
        online = self.proto.online()
        stored = self.proto.request("snacks")
        private = self.proto.msg("bob", "psst")
        self.proto.say("bye all")
        done = self.proto.quit()
        self.proto.quit()  # once is enough
        self.assertEqual(
            self.server.received(),
            ["HISTORY 3", "ONLINE", "REQUEST snacks", "MSG bob psst", "SAY bye all"],
        )
        self.server.send(
            "HISTORY 7 2026-01-02T03:04:05Z CHAT bob hi",
            "HISTORY-END 1",
            "ONLINE 2 alice bob",
            "OK MSG bob",
        )
        self.assertEqual(self.server.received(), [])  # the REQUEST is not stored yet
        self.server.send("OK REQUEST 4")
        self.assertEqual(self.server.received(), ["QUIT"])
        self.assertEqual(len(self.successResultOf(history)), 1)
        self.assertEqual(self.successResultOf(online), ["alice", "bob"])
        self.assertEqual(self.successResultOf(stored), 4)
        self.assertEqual(self.successResultOf(private), "bob")
        self.server.send("BYE quit")
        self.server.lose()
        self.assertEqual(self.successResultOf(done), "quit")

    def test_quit_after_an_unanswered_request(self) -> None:
        """A request the server never answers holds QUIT back only until it
        times out, and backlog_seconds says so."""
        online = self.proto.online()
        self.proto.quit()
        self.assertEqual(self.proto.backlog_seconds(), 15.0)
        self.assertEqual(self.server.received(), ["ONLINE"])
        self.clock.advance(15)
        self.failureResultOf(online, NoReply)
        self.assertEqual(self.server.received(), ["QUIT"])

    def test_old_says_forgotten(self) -> None:
        """Sent SAYs are not remembered forever."""
        for i in range(5):
            self.proto.say(f"line {i}")
            self.clock.advance(10)
        self.assertEqual(len(self.proto._sent), 2)

    def test_answered_request_timer_is_cancelled(self) -> None:
        ip = self.proto.ip()
        self.server.send("IP 10.0.0.1")
        self.successResultOf(ip)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pacing(self) -> None:
        """Lines go out below the server's rate limit: a burst, then a few
        a second, in order."""
        for i in range(20):
            self.proto.say(f"line {i}")
        self.assertEqual(len(self.server.received()), 8)
        self.clock.advance(1)
        self.assertEqual(
            self.server.received(), [f"SAY line {i}" for i in (8, 9, 10, 11)]
        )
        self.assertEqual(self.proto.backlog_seconds(), 2.0)
        self.clock.advance(2)
        self.assertEqual(len(self.server.received()), 8)
        self.assertEqual(self.proto.backlog_seconds(), 0.0)


class ScrubTests(SynchronousTestCase):
    """No control character a server sends reaches a listener or an error."""

    NASTY = "\x1b[2J\x9b31m\x08\r\x07\u202e"

    def test_events_scrubbed(self) -> None:
        listener = RecordingListener()
        server = ScriptedServer(make_client(PASSKEY, listener))
        server.log_in()
        server.send(
            f"CHAT bob{self.NASTY} hi{self.NASTY} there",
            f"NOTICE {self.NASTY}pizza",
            f"ERR odd-thing {self.NASTY}boo",
            f"BYE {self.NASTY}bye",
        )
        self.assertEqual(
            listener.events,
            [
                ("chat", "bob[2J31m", "hi[2J31m there"),
                ("notice", "[2J31mpizza"),
                ("error", "odd-thing", "[2J31mboo"),
                ("bye", "[2J31mbye"),
            ],
        )

    def test_pre_auth_error_scrubbed(self) -> None:
        """An unauthenticated server's ERR text is scrubbed too."""
        server = ScriptedServer(make_client(PASSKEY))
        server.send("HELLO partypool/1 Pool", "ERR banned go\x1b]0;pwned\x07 away\x9b")
        failure = self.failureResultOf(server.proto.logged_in, ServerError)
        self.assertEqual(str(failure.value), "banned: go]0;pwned away")


class ChannelBindingTests(SynchronousTestCase):
    """Issue 13.1: over TLS the login is SCRAM-SHA-256-PLUS, bound to the
    certificate the client saw."""

    def test_plus_over_tls(self) -> None:
        """Over TLS the client asks for SCRAM-SHA-256-PLUS with
        ``p=tls-server-end-point``; the server's own binding matches."""
        server = ScriptedServer(make_client(PASSKEY), tls=certificate())
        server.log_in()
        self.assertEqual(server.mechanism, "SCRAM-SHA-256-PLUS")
        self.assertTrue(server.client_first.startswith("p=tls-server-end-point,,"))
        self.assertEqual(self.successResultOf(server.proto.logged_in), "Test Pool")

    def test_relay_fails_the_login(self) -> None:
        """A relay shows its own certificate: the binding the client proves
        is not the server's, so the server refuses the proof."""
        server = ScriptedServer(
            make_client(PASSKEY), tls=certificate(), shown=certificate("relay")
        )
        server.log_in()
        failure = self.failureResultOf(server.proto.logged_in, ServerError)
        self.assertEqual(failure.value.code, "auth-failed")

    def test_plain_tcp_has_no_binding(self) -> None:
        server = ScriptedServer(make_client(PASSKEY))
        server.log_in()
        self.assertEqual(server.mechanism, "SCRAM-SHA-256")
        self.successResultOf(server.proto.logged_in)


class IterationTests(SynchronousTestCase):
    """Issue 13.2: the PBKDF2 count is checked before the proof exists."""

    def test_cheap_count_refused_before_the_proof(self) -> None:
        """A server asking for 4096 iterations gets no AUTH-RESPONSE from a
        client that expects the documented 390,000."""
        server = ScriptedServer(ChatClientProtocol(PASSKEY), iterations=4096)
        server.log_in()
        failure = self.failureResultOf(server.proto.logged_in, WeakIterations)
        self.assertEqual((failure.value.asked, failure.value.minimum), (4096, 390_000))
        self.assertIn("--min-iterations 4096", str(failure.value))
        self.assertEqual(server.received(), [])
        self.assertTrue(server.transport.disconnecting)

    def test_count_at_the_floor_accepted(self) -> None:
        server = ScriptedServer(
            make_client(PASSKEY, min_iterations=5000), iterations=5000
        )
        server.log_in()
        self.successResultOf(server.proto.logged_in)
        self.assertEqual(server.proto.iterations, 5000)


class BeforeLoginTests(SynchronousTestCase):
    """Issue 13.5 and 13.11: nothing is shown before the server proved it
    knows the passkey, and a login that does not finish times out."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.listener = RecordingListener()
        self.server = ScriptedServer(
            make_client(PASSKEY, self.listener, clock=self.clock)
        )

    def test_room_lines_before_login_are_not_shown(self) -> None:
        """A fake server that never proves the passkey: its NOTICE, CHAT
        from a look-alike root and SHUTDOWN reach no one, and the login
        times out instead of hanging."""
        self.server.send(
            "HELLO partypool/1 Evil Pool",
            "NOTICE [root] The passkey changed, get the new invite at http://x",
            "CHAT root\u200b hello",
            "SHUTDOWN 5 bye",
            "BYE see you",
            "PRIVATE root psst",
            "REQUESTED 1 bob x",
        )
        self.assertEqual(self.listener.events, [])
        self.assertNoResult(self.server.proto.logged_in)
        self.clock.advance(30)
        failure = self.failureResultOf(self.server.proto.logged_in, LoginTimeout)
        self.assertTrue(failure.value.greeted)
        self.assertTrue(self.server.transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_silent_server_times_out_sooner(self) -> None:
        """No greeting at all (a TLS server while we speak plain TCP, or no
        Party Pool server): the greeting timeout says so in 10 s."""
        self.clock.advance(10)
        failure = self.failureResultOf(self.server.proto.logged_in, LoginTimeout)
        self.assertFalse(failure.value.greeted)
        self.assertIn("did not greet us", str(failure.value))

    def test_other_service(self) -> None:
        """A server that is not Party Pool (an SSH banner) is named as such."""
        self.server.send("SSH-2.0-OpenSSH_9.2p1 Debian")
        failure = self.failureResultOf(self.server.proto.logged_in, NotPartyPool)
        self.assertIn("SSH-2.0-OpenSSH", str(failure.value))
        self.assertEqual(self.server.received(), [])

    def test_endless_first_line(self) -> None:
        """Megabytes without a line break before login: not Party Pool."""
        self.server.proto.dataReceived(b"x" * 10_000)
        self.failureResultOf(self.server.proto.logged_in, NotPartyPool)

    def test_timers_stop_at_login(self) -> None:
        self.server.log_in()
        self.successResultOf(self.server.proto.logged_in)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class MalformedLineTests(SynchronousTestCase):
    """Issue 13.6: a bad line is skipped; the session goes on."""

    def setUp(self) -> None:
        self.listener = RecordingListener()
        self.server = ScriptedServer(make_client(PASSKEY, self.listener))
        self.server.log_in()
        self.proto = self.server.proto
        self.server.received()

    def test_bad_numbers_are_skipped(self) -> None:
        """``SHUTDOWN ²``, ``OK REQUEST ³``, Arabic-Indic digits, an
        unknown verb: skipped, never a disconnect; later lines still work."""
        request = self.proto.request("snacks")
        self.server.send(
            "SHUTDOWN \u00b2 soon",
            "SHUTDOWN \u0663\u0660 soon",
            "OK REQUEST \u00b3",
            "HISTORY-END \u00b2",
            "REQUESTED x bob y",
            "ONLINE many alice",
            "ſhutdown 5 lookalike verb",
            "WHATEVER 1 2 3",
            "",
            "SHUTDOWN 30 maintenance",
            "OK REQUEST 4",
        )
        self.assertFalse(self.server.transport.disconnecting)
        self.assertEqual(self.successResultOf(request), 4)
        self.assertEqual(self.listener.events, [("shutdown", 30, "maintenance")])

    def test_failing_listener_costs_only_its_line(self) -> None:
        """An exception while handling one line (here: the view) is logged
        and the next line is handled as usual."""

        def broken(name: str, text: str) -> None:
            raise UnicodeEncodeError("cp1252", text, 0, 1, "cannot encode")

        self.listener.chat = broken  # type: ignore[method-assign]
        self.server.send("CHAT bob café 😀", "JOINED carol")
        self.assertEqual(self.listener.events, [("joined", "carol")])
        self.assertFalse(self.server.transport.disconnecting)
        self.flushLoggedErrors(UnicodeEncodeError)

    def test_no_line_break_reaches_the_wire(self) -> None:
        """Issue 13.8, the last line of defence: text with CR or LF is
        never sent as (part of) a protocol line."""
        for text in ("first\nQUIT x", "first\rQUIT x"):
            with self.assertRaises(ValueError):
                self.proto.say(text)
            with self.assertRaises(ValueError):
                self.proto.msg("bob", text)
        self.assertEqual(self.server.received(), [])


class AdditionsTests(SynchronousTestCase):
    """Issue 14 on the client's side: private messages, history, admin
    commands and requests as they arrive (PROTOCOL.md "Additions")."""

    def setUp(self) -> None:
        self.listener = RecordingListener()
        self.server = ScriptedServer(make_client(PASSKEY, self.listener))
        self.server.log_in()
        self.proto = self.server.proto
        self.server.received()

    def test_private_messages(self) -> None:
        sent = self.proto.msg("BOB", "just  for you")
        unknown = self.proto.msg("nobody", "hello?")
        self.server.send(
            "OK MSG bob", "ERR no-such-user no one named nobody", "PRIVATE carol psst"
        )
        self.assertEqual(self.successResultOf(sent), "bob")
        self.assertEqual(
            self.failureResultOf(unknown, ServerError).value.code, "no-such-user"
        )
        self.assertEqual(self.listener.events, [("private", "carol", "psst")])
        self.assertEqual(
            self.server.received(), ["MSG BOB just  for you", "MSG nobody hello?"]
        )

    def test_history(self) -> None:
        """HISTORY lines become entries with their UTC time; a line that
        cannot be read is skipped, the rest kept."""
        history = self.proto.history(20)
        self.server.send(
            "HISTORY 7 2026-11-30T01:50:04.123Z CHAT alice hi  there",
            "HISTORY 8 2026-11-30T01:51:00Z NOTICE pizza is here",
            "HISTORY 9 yesterday CHAT bob broken",
            "HISTORY 10 2026-11-30T01:52:00Z LEFT bob quit",
            "HISTORY-END 4",
        )
        entries = self.successResultOf(history)
        self.assertEqual([e.id for e in entries], [7, 8])
        self.assertEqual((entries[0].name, entries[0].text), ("alice", "hi  there"))
        self.assertEqual(entries[0].time.utcoffset(), datetime.timedelta(0))
        self.assertEqual((entries[1].verb, entries[1].name), ("NOTICE", None))
        self.assertEqual(self.server.received(), ["HISTORY 20"])
        self.assertEqual(self.listener.events, [])

    def test_admin_command(self) -> None:
        """ADMIN-OUT lines stream to the output in order; ADMIN-END's status
        is the result."""
        out: list[str] = []
        status = self.proto.admin("list-conn -u", out.append)
        self.server.send("ADMIN-OUT alice", "ADMIN-OUT bob")
        self.assertEqual(out, ["alice", "bob"])
        self.assertNoResult(status)
        self.server.send("ADMIN-END 0")
        self.assertEqual(self.successResultOf(status), 0)
        failed = self.proto.admin("remove -u nobody", out.append)
        self.server.send("ADMIN-OUT no user named nobody", "ADMIN-END 1")
        self.assertEqual(self.successResultOf(failed), 1)
        self.assertEqual(
            self.server.received(), ["ADMIN list-conn -u", "ADMIN remove -u nobody"]
        )

    def test_requested_and_long_online(self) -> None:
        """REQUESTED reaches the listener; ONLINE-PART lines and the final
        ONLINE make one list."""
        online = self.proto.online()
        self.server.send(
            "REQUESTED 12 bob more  snacks",
            "ONLINE-PART alice bob",
            "ONLINE-PART carol",
            "ONLINE 4 dave",
        )
        self.assertEqual(
            self.successResultOf(online), ["alice", "bob", "carol", "dave"]
        )
        self.assertEqual(
            self.listener.events, [("requested", 12, "bob", "more  snacks")]
        )

    def test_root_logs_in_as_root(self) -> None:
        """--root: the SCRAM username is root."""
        server = ScriptedServer(
            make_client("root password", username="root"), "root password"
        )
        server.log_in()
        self.assertIn(",n=root,", server.client_first)
        self.successResultOf(server.proto.logged_in)

"""The client protocol against a scripted server: login, replies, events."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.known_servers import FingerprintChanged
from partypool.client.protocol import (
    ChatClientProtocol,
    ChatListener,
    NoReply,
    ServerAuthenticationError,
    ServerError,
)
from tests.client_fakes import PASSKEY, ScriptedServer, b64


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

    def bye(self, reason: str) -> None:
        self.events.append(("bye", reason))


class LoginTests(SynchronousTestCase):
    def test_login(self) -> None:
        """A full SCRAM exchange with username ``chat`` and no channel
        binding fires logged_in with the name from HELLO."""
        server = ScriptedServer(ChatClientProtocol(PASSKEY))
        server.log_in()
        self.assertTrue(server.client_first.startswith("n,,n=chat,r="))
        self.assertEqual(self.successResultOf(server.proto.logged_in), "Test Pool")
        self.assertFalse(server.transport.disconnecting)

    def test_bad_server_signature(self) -> None:
        """A server that cannot prove it knows the passkey is dropped."""
        server = ScriptedServer(ChatClientProtocol(PASSKEY))
        server.log_in(server_final="v=" + b64("not the signature"))
        self.failureResultOf(server.proto.logged_in, ServerAuthenticationError)
        self.assertTrue(server.transport.disconnecting)

    def test_wrong_passkey(self) -> None:
        """``ERR auth-failed`` fails the login with the server's code."""
        server = ScriptedServer(ChatClientProtocol("not the passkey"))
        server.log_in()
        failure = self.failureResultOf(server.proto.logged_in, ServerError)
        self.assertEqual(failure.value.code, "auth-failed")
        self.assertTrue(server.transport.disconnecting)

    def test_other_protocol(self) -> None:
        """A greeting for another protocol version sends nothing."""
        server = ScriptedServer(ChatClientProtocol(PASSKEY))
        server.send("HELLO partypool/2 Future")
        self.failureResultOf(server.proto.logged_in, ServerAuthenticationError)
        self.assertEqual(server.received(), [])

    def test_refused_certificate_sends_nothing(self) -> None:
        """When the peer check refuses the certificate, HELLO gets no AUTH."""

        def refuse(certificate: object) -> None:
            raise FingerprintChanged("h", 1, "AA", "BB", "reset")

        server = ScriptedServer(ChatClientProtocol(PASSKEY, check_peer=refuse))
        server.transport.getPeerCertificate = lambda: None
        server.proto.handshakeCompleted()
        server.send("HELLO partypool/1 Test Pool")
        self.failureResultOf(server.proto.logged_in, FingerprintChanged)
        self.assertEqual(server.received(), [])
        self.assertTrue(server.transport.disconnecting)

    def test_unchecked_certificate_sends_nothing(self) -> None:
        """HELLO before the certificate was checked is refused (the check
        must come first)."""
        server = ScriptedServer(ChatClientProtocol(PASSKEY, check_peer=print))
        server.send("HELLO partypool/1 Test Pool")
        self.failureResultOf(server.proto.logged_in, ServerAuthenticationError)
        self.assertEqual(server.received(), [])


class ChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.listener = RecordingListener()
        self.server = ScriptedServer(ChatClientProtocol(PASSKEY, self.listener))
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
        self.proto = ChatClientProtocol(PASSKEY, self.listener, clock=self.clock)
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
        self.assertEqual(self.listener.events, [("error", "text-too-long", "too long")])

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
        self.assertEqual(self.listener.events, [("error", "text-too-long", "too long")])

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
        server = ScriptedServer(ChatClientProtocol(PASSKEY, listener))
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
        server = ScriptedServer(ChatClientProtocol(PASSKEY))
        server.send("ERR banned go\x1b]0;pwned\x07 away\x9b")
        failure = self.failureResultOf(server.proto.logged_in, ServerError)
        self.assertEqual(str(failure.value), "banned: go]0;pwned away")

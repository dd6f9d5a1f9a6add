"""The client protocol against a scripted server: login, replies, events."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.known_servers import FingerprintChanged
from partypool.client.protocol import (
    ChatClientProtocol,
    ChatListener,
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

"""The session: joining, naming, commands, BYE, reconnect with backoff."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.connect import ServerAddress
from partypool.client.protocol import ChatClientProtocol
from partypool.client.session import (
    EXIT_ERROR,
    EXIT_KICKED,
    EXIT_OK,
    ChatSession,
    SessionView,
)
from tests.client_fakes import PASSKEY, ScriptedServer


class RecordingView(SessionView):
    def __init__(self) -> None:
        self.reports: list[tuple[object, ...]] = []
        self.name_requests: list[tuple[str | None, Deferred[str | None]]] = []

    def status(self, text: str) -> None:
        self.reports.append(("status", text))

    def failure(self, text: str) -> None:
        self.reports.append(("failure", text))

    def hint(self, text: str) -> None:
        self.reports.append(("hint", text))

    def ask_name(self, problem: str | None) -> Deferred[str | None]:
        answer: Deferred[str | None] = Deferred()
        self.name_requests.append((problem, answer))
        return answer

    def named(self, name: str, rejoined: bool) -> None:
        self.reports.append(("named", name, rejoined))

    def said(self, name: str, text: str) -> None:
        self.reports.append(("said", name, text))

    def online(self, names: list[str]) -> None:
        self.reports.append(("online", names))

    def bye(self, reason: str) -> None:
        self.reports.append(("bye", reason))

    def error(self, code: str, text: str) -> None:
        self.reports.append(("error", code, text))

    def request_stored(self, request_id: int) -> None:
        self.reports.append(("request_stored", request_id))

    def of_kind(self, kind: str) -> list[tuple[object, ...]]:
        return [report for report in self.reports if report[0] == kind]


class SessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.view = RecordingView()
        self.servers: list[ScriptedServer] = []
        self.refuse = False

    def connect(self, proto: ChatClientProtocol) -> Deferred[object]:
        if self.refuse:
            return fail(ConnectionRefusedError("nobody home"))
        self.servers.append(ScriptedServer(proto))
        return succeed(None)

    def start(
        self, name: str | None = "alice", passkey: str = PASSKEY
    ) -> Deferred[int]:
        self.session = ChatSession(
            address=ServerAddress("chat.example", 12345, tls=False),
            passkey=passkey,
            view=self.view,
            reactor=self.clock,
            name=name,
            connect=self.connect,
            backoff=(1, 2, 4),
            give_up_after=10,
        )
        return self.session.run()

    def join(self, server: ScriptedServer, name: str = "alice") -> None:
        server.log_in()
        self.assertEqual(server.received(), [f"NICK {name}"])
        server.send(f"OK NICK {name}")

    def test_name_retry_then_chat(self) -> None:
        """Without --name the user is asked, and asked again with the
        server's reason when the name is refused; then lines become SAY."""
        self.start(name=None)
        [server] = self.servers
        server.log_in()
        [(problem, answer)] = self.view.name_requests
        self.assertIsNone(problem)
        answer.callback("root")
        server.send("ERR nick-invalid the name root is reserved")
        problem, answer = self.view.name_requests[1]
        self.assertEqual(problem, "the name root is reserved")
        answer.callback("alice")
        server.send("OK NICK alice")
        self.assertEqual(self.view.of_kind("named"), [("named", "alice", False)])
        self.session.handle_input("hello <b>all</b>")
        self.session.handle_input("/online")
        self.session.handle_input("/nonsense")
        self.assertEqual(
            server.received(),
            ["NICK root", "NICK alice", "SAY hello <b>all</b>", "ONLINE"],
        )
        server.send("ONLINE 2 alice bob")
        self.assertIn(("online", ["alice", "bob"]), self.view.reports)
        self.assertIn(("said", "alice", "hello <b>all</b>"), self.view.reports)
        self.assertEqual(len(self.view.of_kind("hint")), 1)

    def test_requests_never_hang(self) -> None:
        """A too-long /request is refused without sending it; a line the
        server dropped as over-rate is reported after a while, and the
        next request gets its own answer."""
        self.start()
        [server] = self.servers
        self.join(server)
        self.session.handle_input("/request " + "x" * 1001)
        self.assertEqual(server.received(), [])
        [(_, code, _)] = self.view.of_kind("error")
        self.assertEqual(code, "text-too-long")
        self.session.handle_input("/online")
        server.send("ERR rate-limited slow down")
        self.clock.advance(15)
        self.assertIn("did not answer", self.view.of_kind("hint")[-1][1])
        self.session.handle_input("/request snacks")
        self.assertEqual(server.received(), ["ONLINE", "REQUEST snacks"])
        server.send("OK REQUEST 5")
        self.assertEqual(self.view.of_kind("request_stored"), [("request_stored", 5)])

    def test_exit(self) -> None:
        """/exit sends QUIT; BYE quit ends the session with status 0."""
        result = self.start()
        [server] = self.servers
        self.join(server)
        self.session.handle_input("/exit")
        self.assertEqual(server.received(), ["QUIT"])
        server.send("BYE quit")
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_OK)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_quit_without_answer(self) -> None:
        """A server that never answers QUIT is dropped after a while."""
        result = self.start()
        [server] = self.servers
        self.join(server)
        self.session.quit()
        self.clock.advance(10)
        self.assertTrue(server.transport.disconnecting)
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_OK)

    def test_kicked(self) -> None:
        """BYE from an administrator's kick ends with status 2, no reconnect."""
        result = self.start()
        [server] = self.servers
        self.join(server)
        server.send("BYE removed by admin")
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_KICKED)
        self.assertEqual(len(self.servers), 1)

    def test_wrong_passkey(self) -> None:
        """A refused login is not retried."""
        result = self.start(passkey="not it")
        self.servers[0].log_in()
        self.servers[0].lose()
        self.assertEqual(self.successResultOf(result), EXIT_ERROR)
        [(_, text)] = self.view.of_kind("failure")
        self.assertIn("wrong passkey", text)
        self.assertEqual(len(self.servers), 1)

    def test_unreachable(self) -> None:
        """A server that cannot be reached at all is an error at once."""
        self.refuse = True
        result = self.start()
        self.assertEqual(self.successResultOf(result), EXIT_ERROR)
        self.assertIn("nobody home", self.view.of_kind("failure")[0][1])

    def test_reconnect(self) -> None:
        """A lost connection is followed by a new login under the same
        name; a name still held by the lost connection is retried later."""
        result = self.start()
        self.join(self.servers[0])
        self.servers[0].lose()
        self.assertIn(("status", "connection lost; reconnecting"), self.view.reports)
        self.servers[1].log_in()
        self.servers[1].send("ERR nick-taken the name alice is taken")
        self.assertTrue(self.servers[1].transport.disconnecting)
        self.servers[1].lose()
        self.assertEqual(len(self.servers), 2)
        self.session.handle_input("lost words")
        self.assertIn(("hint", "not connected: nothing was sent"), self.view.reports)
        self.clock.advance(1)
        self.join(self.servers[2])
        self.assertEqual(self.view.of_kind("named")[-1], ("named", "alice", True))
        self.assertNoResult(result)
        self.servers[2].send("BYE server stopping")
        self.servers[2].lose()
        self.assertEqual(self.successResultOf(result), EXIT_OK)

    def test_give_up(self) -> None:
        """Reconnect attempts back off (1, 2, 4, 4 … s) and stop once the
        connection has been gone longer than give_up_after."""
        result = self.start()
        self.join(self.servers[0])
        self.refuse = True
        self.servers[0].lose()
        delays = []
        while self.clock.getDelayedCalls():
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [1, 2, 4])
        self.assertEqual(self.successResultOf(result), EXIT_ERROR)
        self.assertIn("giving up", self.view.of_kind("failure")[0][1])

    def test_quit_while_waiting_to_reconnect(self) -> None:
        """Ctrl-D while reconnecting leaves at once, without timers left."""
        result = self.start()
        self.join(self.servers[0])
        self.refuse = True
        self.servers[0].lose()
        self.session.quit()
        self.assertEqual(self.successResultOf(result), EXIT_OK)
        self.assertEqual(self.clock.getDelayedCalls(), [])

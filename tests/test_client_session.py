"""The session: joining, naming, commands, BYE, reconnect with backoff."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.connect import ServerAddress
from partypool.client.known_servers import KnownServers
from partypool.client.protocol import ChatClientProtocol
from partypool.client.session import (
    EXIT_ERROR,
    EXIT_KICKED,
    EXIT_OK,
    ChatSession,
    SessionView,
)
from tests.client_fakes import FAST, PASSKEY, ScriptedServer


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

    def private_sent(self, name: str, text: str) -> None:
        self.reports.append(("private_sent", name, text))

    def refused(self, said: str, code: str, text: str) -> None:
        self.reports.append(("refused", said, code))

    def private_refused(self, name: str, said: str, code: str, text: str) -> None:
        self.reports.append(("private_refused", name, said, code))

    def history(self, entries) -> None:
        self.reports.append(("history", entries))

    def admin_output(self, line: str) -> None:
        self.reports.append(("admin_output", line))

    def admin_done(self, command: str, status: int) -> None:
        self.reports.append(("admin_done", command, status))

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
        self, name: str | None = "alice", passkey: str = PASSKEY, **options: object
    ) -> Deferred[int]:
        options.setdefault("address", ServerAddress("chat.example", 12345, tls=False))
        options.setdefault("history", 0)
        self.session = ChatSession(
            secret=passkey,
            view=self.view,
            reactor=self.clock,
            name=name,
            connect=self.connect,
            backoff=(1, 2, 4),
            give_up_after=10,
            min_iterations=FAST,
            **options,
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
        [(problem, answer)] = self.view.name_requests
        self.assertIsNone(problem)
        self.assertEqual(self.servers, [])  # asked before connecting
        answer.callback("root")
        [server] = self.servers
        server.log_in()
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

    def test_leaving_keeps_the_answers_due(self) -> None:
        """Newcomer 2, finding 10: /exit right after requests waits for
        their answers before QUIT; nothing typed after it is sent; and the
        end is not reported as a lost connection."""
        result = self.start(history=3)
        [server] = self.servers
        self.join(server)
        self.session.handle_input("/online")
        self.session.handle_input("/ip")
        self.session.handle_input("/request snacks")
        self.session.handle_input("/exit")
        self.session.handle_input("one more thing")
        self.session.handle_input("/online")
        self.assertEqual(
            server.received(), ["HISTORY 3", "ONLINE", "IP", "REQUEST snacks"]
        )
        self.assertEqual(
            self.view.of_kind("hint"), [("hint", "leaving: nothing was sent")] * 2
        )
        server.send("HISTORY-END 0", "ONLINE 1 alice", "IP 127.0.0.1", "OK REQUEST 2")
        self.assertEqual(server.received(), ["QUIT"])
        server.send("BYE quit")
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_OK)
        self.assertIn(("online", ["alice"]), self.view.reports)
        self.assertIn(("request_stored", 2), self.view.reports)
        self.assertEqual(len(self.view.of_kind("hint")), 2)  # no "lost" hint
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_leaving_on_being_named_keeps_the_history(self) -> None:
        """A script at the end of its input leaves as soon as it is named:
        the history asked for on joining still arrives, then QUIT."""
        self.view.named = lambda name, rejoined: self.session.quit()  # type: ignore[method-assign]
        result = self.start(history=3)
        [server] = self.servers
        self.join(server)
        self.assertEqual(server.received(), ["HISTORY 3"])
        server.send("HISTORY 9 2026-01-02T03:04:05Z CHAT bob hi", "HISTORY-END 1")
        self.assertEqual(server.received(), ["QUIT"])
        server.send("BYE quit")
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_OK)
        [(_, entries)] = self.view.of_kind("history")
        self.assertEqual([e.text for e in entries], ["hi"])
        self.assertEqual(self.view.of_kind("hint"), [])

    def test_server_closing_while_we_leave_is_no_loss(self) -> None:
        """Our own quit is never reported as a lost connection, even when
        the server closes before a pending answer."""
        result = self.start()
        [server] = self.servers
        self.join(server)
        self.session.handle_input("/online")
        self.session.quit()
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_OK)
        self.assertEqual(self.view.of_kind("hint"), [])

    def test_refused_messages_are_reported_with_their_text(self) -> None:
        """Newcomer 2, finding 11: a room or private message the server
        refuses is reported as not delivered, quoting it, for each reason."""
        self.start()
        [server] = self.servers
        self.join(server)
        self.session.handle_input("while muted")
        self.session.handle_input("/msg Bob psst")
        self.session.handle_input("x" * 50)
        self.session.handle_input("/msg carol hi")
        server.send(
            "ERR muted you are muted for another 52 s",
            "ERR muted you are muted for another 52 s",
            "ERR text-too-long text is longer than 40 characters",
            "ERR no-such-user nobody called carol",
        )
        self.assertEqual(self.view.of_kind("said")[0], ("said", "alice", "while muted"))
        self.assertEqual(
            self.view.of_kind("refused"),
            [
                ("refused", "while muted", "muted"),
                ("refused", "x" * 50, "text-too-long"),
            ],
        )
        self.assertEqual(
            self.view.of_kind("private_refused"),
            [
                ("private_refused", "Bob", "psst", "muted"),
                ("private_refused", "carol", "hi", "no-such-user"),
            ],
        )
        self.assertEqual(self.view.of_kind("error"), [])

    def test_refused_name_is_an_error(self) -> None:
        """Newcomer 2, finding 18: leaving after the server refused the
        name (a banned one, say) means the room was never joined: status 1,
        saying why."""
        result = self.start(name="bob")
        [server] = self.servers
        server.log_in()
        server.received()
        server.send("ERR banned the name bob is banned")
        [(problem, answer)] = self.view.name_requests
        self.assertEqual(problem, "the name bob is banned")
        answer.callback(None)
        self.assertEqual(server.received(), ["QUIT"])
        server.send("BYE quit")
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_ERROR)
        [(_, text)] = self.view.of_kind("failure")
        self.assertEqual(text, "never joined the room: the name bob is banned")

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

    def test_slow_second_name_logs_in_again(self) -> None:
        """Issue 13.9: the server's login timeout ends the connection while
        the user thinks of another name; the session logs in again with the
        new name instead of showing a dead prompt."""
        self.start(name=None)
        self.view.name_requests[0][1].callback("root")
        first = self.servers[0]
        first.log_in()
        first.send("ERR nick-invalid the name root is reserved")
        first.send("ERR timeout login took too long", "BYE timeout")
        first.lose()
        self.view.name_requests[1][1].callback("alice")
        self.assertIn(
            ("status", "the login timed out meanwhile; logging in again"),
            self.view.reports,
        )
        self.join(self.servers[1])
        self.assertEqual(self.view.of_kind("named"), [("named", "alice", False)])
        self.assertEqual(self.view.of_kind("failure"), [])

    def test_refusal_text_from_unproven_server_not_shown(self) -> None:
        """Issue 13.5: an ERR before AUTH-OK is explained in our words; the
        server's own text (unproven) is not shown."""
        result = self.start()
        server = self.servers[0]
        server.send(
            "HELLO partypool/1 x", "ERR banned get the new invite at http://evil"
        )
        server.lose()
        self.assertEqual(self.successResultOf(result), EXIT_ERROR)
        [(_, text)] = self.view.of_kind("failure")
        self.assertIn("banned", text)
        self.assertNotIn("evil", text)

    def test_paste_becomes_separate_messages(self) -> None:
        """Issue 13.8: a pasted line break never makes a raw protocol line:
        the room gets two messages, nobody is logged out."""
        self.start()
        server = self.servers[0]
        self.join(server)
        self.session.handle_input("first line\nquit second line")
        self.session.handle_input("/request more\r\nQUIT snacks")
        self.assertEqual(
            server.received(),
            ["SAY first line", "SAY quit second line", "REQUEST more QUIT snacks"],
        )

    def test_history_on_joining(self) -> None:
        """The last messages are asked for once, on the first join."""
        self.start(history=20)
        server = self.servers[0]
        self.join(server)
        self.assertEqual(server.received(), ["HISTORY 20"])
        server.send("HISTORY 3 2026-01-02T03:04:05Z CHAT bob hi", "HISTORY-END 1")
        [(_, entries)] = self.view.of_kind("history")
        self.assertEqual([(e.name, e.text) for e in entries], [("bob", "hi")])

    def test_private_message(self) -> None:
        self.start()
        server = self.servers[0]
        self.join(server)
        self.session.handle_input("/msg Bob see you")
        server.send("OK MSG bob")
        self.assertIn(("private_sent", "bob", "see you"), self.view.reports)
        self.assertEqual(server.received(), ["MSG Bob see you"])

    def test_admin_needs_root(self) -> None:
        self.start()
        server = self.servers[0]
        self.join(server)
        self.session.handle_input("/kick bob")
        self.assertEqual(server.received(), [])
        self.assertIn("root", self.view.of_kind("hint")[0][1])

    def test_root_session(self) -> None:
        """--root: SCRAM username root, NICK root without asking, admin
        commands and their shortcuts go out as ADMIN lines."""
        self.start(name=None, root=True)
        server = self.servers[0]
        self.assertEqual(self.view.name_requests, [])
        self.join(server, "root")
        self.assertIn(",n=root,", server.client_first)
        self.session.handle_input("/mute bob 60")
        self.session.handle_input("/admin list-conn")
        self.assertEqual(
            server.received(), ["ADMIN mute -u bob -t 60", "ADMIN list-conn"]
        )
        server.send("ADMIN-OUT muted bob", "ADMIN-END 0", "ADMIN-OUT x", "ADMIN-END 1")
        self.assertEqual(
            self.view.of_kind("admin_output"),
            [("admin_output", "muted bob"), ("admin_output", "x")],
        )
        self.assertEqual(
            self.view.of_kind("admin_done"),
            [("admin_done", "mute -u bob -t 60", 0), ("admin_done", "list-conn", 1)],
        )

    def test_remembered_count_is_the_floor(self) -> None:
        """Issue 13.2: a server that asked for 600,000 iterations once is
        refused when it later asks for fewer, and the message says which line
        to delete if the operator lowered it on purpose."""
        known = KnownServers(Path(self.mktemp()))
        known.remember("chat.example", 12345, None, 600_000)
        address = ServerAddress("chat.example", 12345, tls=False, known=known)
        result = self.start(address=address)
        self.servers[0].log_in()
        self.assertEqual(self.servers[0].received(), [])  # no proof sent
        self.servers[0].lose()
        self.assertEqual(self.successResultOf(result), EXIT_ERROR)
        [(_, text)] = self.view.of_kind("failure")
        self.assertIn("asked for 600,000 before", text)
        self.assertIn("delete line 1", text)

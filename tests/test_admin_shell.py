"""The interactive shell on conch's in-memory terminal emulator (TerminalBuffer).

The executor is a fake whose Deferreds the test fires, so a slow command (one
waiting on the database) can be finished while the operator is mid-line; the
assertions read the emulated screen, as a person would.
"""

from __future__ import annotations

from twisted.conch.insults.helper import TerminalBuffer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from partypool.admin.commands import Result
from partypool.admin.shell import AdminShell
from partypool.admin.ssh import _LineShell

PROMPT = "root@partypool> "


class FakeCommands:
    """Records lines; answers at once unless the test asked for a slow line."""

    pool = None

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.slow: dict[str, Deferred[Result]] = {}

    def names(self) -> list[str]:
        return ["list", "list-conn", "remove", "requests", "exit"]

    def run(self, line: str) -> Deferred[Result]:
        self.lines.append(line)
        if line in self.slow:
            return self.slow[line]
        if line == "exit":
            return succeed(Result("logout", action="exit"))
        return succeed(Result(f"ran {line}" if line else ""))


class ShellTests(unittest.TestCase):
    def setUp(self) -> None:
        self.commands = FakeCommands()
        self.ended: list[int] = []
        self.screen = TerminalBuffer()
        self.screen.connectionMade()
        self.shell = AdminShell(self.commands, self.ended.append)
        self.shell.makeConnection(self.screen)

    def type(self, text: str) -> None:
        for char in text:
            self.shell.keystrokeReceived(char.encode(), None)

    def key(self, key_id: object) -> None:
        self.shell.keystrokeReceived(key_id, None)

    def rows(self) -> list[str]:
        return [
            row.rstrip()
            for row in bytes(self.screen).decode().splitlines()
            if row.strip()
        ]

    def test_prompt_run_and_prompt_again(self) -> None:
        self.assertEqual(self.rows(), [PROMPT.rstrip()])
        self.type("list\r")
        self.assertEqual(self.commands.lines, ["list"])
        self.assertEqual(self.rows(), [PROMPT + "list", "ran list", PROMPT.rstrip()])

    def test_output_arriving_late_is_drawn_above_the_typed_line(self) -> None:
        """A slow command's output must not clobber what is being typed."""
        self.commands.slow["requests"] = pending = Deferred()
        self.type("requests\r")
        self.type("remove -u b")
        self.key(self.screen.LEFT_ARROW)
        pending.callback(Result("#1  alice: more cowbell"))
        self.assertEqual(
            self.rows(),
            [PROMPT + "requests", "#1  alice: more cowbell", PROMPT + "remove -u b"],
        )
        self.assertEqual(self.screen.x, len(PROMPT + "remove -u "))
        self.type("x\r")
        self.assertEqual(self.commands.lines[-1], "remove -u xb")

    def test_lines_entered_during_a_slow_command_wait_their_turn(self) -> None:
        self.commands.slow["requests"] = pending = Deferred()
        self.type("requests\rlist\r")
        self.assertEqual(self.commands.lines, ["requests"])
        pending.callback(Result("done"))
        self.assertEqual(self.commands.lines, ["requests", "list"])
        self.assertEqual(self.rows()[-2:], ["ran list", PROMPT.rstrip()])

    def test_tab_completes_a_unique_command_and_lists_ambiguous_ones(self) -> None:
        self.type("rem\t")
        self.assertEqual(self.rows()[-1], PROMPT + "remove")
        self.assertEqual(b"".join(self.shell.lineBuffer), b"remove ")
        self.key(self.screen.BACKSPACE)
        for _ in range(6):
            self.key(self.screen.BACKSPACE)
        self.type("li\t")
        self.assertEqual(self.rows()[-1], PROMPT + "list")
        self.type("\t")
        self.assertEqual(self.rows()[-2:], ["list  list-conn", PROMPT + "list"])

    def test_tab_after_the_command_name_inserts_nothing(self) -> None:
        self.type("remove -\t")
        self.assertEqual(b"".join(self.shell.lineBuffer), b"remove -")

    def test_history_with_the_up_arrow(self) -> None:
        self.type("list\rremove -u bob\r")
        self.key(self.screen.UP_ARROW)
        self.key(self.screen.UP_ARROW)
        self.type("\r")
        self.assertEqual(self.commands.lines, ["list", "remove -u bob", "list"])

    def test_ctrl_c_drops_the_line(self) -> None:
        self.type("remove -u bob\x03list\r")
        self.assertEqual(self.commands.lines, ["list"])
        self.assertIn(PROMPT + "remove -u bob^C", self.rows())

    def test_ctrl_d_deletes_on_a_line_and_logs_out_on_an_empty_one(self) -> None:
        self.type("lists")
        self.key(self.screen.LEFT_ARROW)
        self.type("\x04")
        self.assertEqual(b"".join(self.shell.lineBuffer), b"list")
        self.assertEqual(self.ended, [])
        self.key(self.screen.BACKSPACE)
        for _ in range(4):
            self.key(self.screen.BACKSPACE)
        self.type("\x04")
        self.assertEqual(self.ended, [0])
        self.assertEqual(self.rows()[-1], PROMPT + "logout")

    def test_exit_logs_out(self) -> None:
        self.type("exit\r")
        self.assertEqual(self.ended, [0])
        self.assertEqual(self.rows()[-1], "logout")

    def test_resize_keeps_the_screen(self) -> None:
        """conch's RecvLine erases the display on resize; this shell does not."""
        self.type("list\rrem")
        self.shell.terminalSize(132, 50)
        self.assertEqual(self.shell.width, 132)
        self.assertEqual(self.rows(), [PROMPT + "list", "ran list", PROMPT + "rem"])

    def test_lines_queued_when_the_connection_drops_never_run(self) -> None:
        """``requests⏎close-server⏎`` then a dropped connection: no close-server."""
        self.commands.slow["requests"] = pending = Deferred()
        self.type("requests\rclose-server\r")
        self.shell.connectionLost(Failure(ConnectionDone()))
        pending.callback(Result("#1  alice: more cowbell"))
        self.type("list\r")
        self.assertEqual(self.commands.lines, ["requests"])
        self.assertEqual(self.ended, [])


class LineShellTests(unittest.TestCase):
    """The session without a pty (`_LineShell`) on a string transport."""

    def setUp(self) -> None:
        self.commands = FakeCommands()
        self.ended: list[int] = []
        self.transport = StringTransport()
        self.shell = _LineShell(self.commands, self.ended.append)
        self.shell.makeConnection(self.transport)

    def test_lines_queued_when_the_connection_drops_never_run(self) -> None:
        self.commands.slow["requests"] = pending = Deferred()
        self.shell.dataReceived(b"requests\nclose-server\n")
        self.shell.connectionLost(Failure(ConnectionDone()))
        pending.callback(Result("#1  alice: more cowbell"))
        self.shell.dataReceived(b"list\n")
        self.shell.input_ended()
        self.assertEqual(self.commands.lines, ["requests"])
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.ended, [])

    def test_lines_run_in_order_while_connected(self) -> None:
        self.commands.slow["requests"] = pending = Deferred()
        self.shell.dataReceived(b"requests\nlist\n")
        self.assertEqual(self.commands.lines, ["requests"])
        pending.callback(Result("done"))
        self.shell.input_ended()
        self.assertEqual(self.commands.lines, ["requests", "list"])
        self.assertEqual(self.transport.value(), b"done\nran list\n")
        self.assertEqual(self.ended, [0])

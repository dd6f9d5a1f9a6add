"""The interactive root shell: line editing, history and completion on a pty.

`AdminShell` is a `HistoricRecvLine`, so arrows, Home/End, Backspace and
history come from conch; it adds the ``root@partypool>`` prompt, Tab
completion of command names, Ctrl-C (drop the line), Ctrl-D on an empty line
(log out) and output that arrives while the operator is typing (a command
waiting on the database) drawn above the typed line instead of through it.
Commands run one at a time, in order: a line entered while one is running
waits its turn.  The shell knows nothing of SSH: it is handed the command
executor and an ``end(status)`` callable that closes the session.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable

from twisted.conch import manhole, recvline

from partypool.admin.commands import AdminCommands, Result

PROMPT = b"root@partypool> "
CTRL_C = b"\x03"
CTRL_D = b"\x04"
BELL = b"\x07"


class AdminShell(recvline.HistoricRecvLine):
    """One operator at a terminal (an insults ``ServerProtocol`` is ``terminal``)."""

    ps = (PROMPT, PROMPT)

    def __init__(self, commands: AdminCommands, end: Callable[[int], None]) -> None:
        self.commands = commands
        self.end = end
        self._busy = False
        self._gone = False
        self._waiting: collections.deque[bytes] = collections.deque()

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.keyHandlers[CTRL_C] = self.handle_INT
        self.keyHandlers[CTRL_D] = self.handle_EOF

    def connectionLost(self, reason: object) -> None:  # noqa: N802
        """The operator is gone: drop the lines still waiting, run nothing more.

        A command already running finishes (it cannot be recalled), but
        ``requests⏎close-server⏎`` typed just before the connection dropped
        must not shut the server down with nobody there to see it.
        """
        self._gone = True
        self._waiting.clear()
        super().connectionLost(reason)

    def terminalSize(self, width: int, height: int) -> None:  # noqa: N802
        """Remember the size; conch's default wipes the screen on every resize."""
        self.width, self.height = width, height

    # -- keys ----------------------------------------------------------------

    def handle_TAB(self) -> None:  # noqa: N802
        """Complete a command name; a second Tab on an ambiguous one lists them."""
        before, after = self.currentLineBuffer()
        if b" " in before:
            self.terminal.write(BELL)
            return
        prefix = before.decode("utf-8", "replace")
        matches = [n for n in self.commands.names() if n.startswith(prefix)]
        if not matches:
            self.terminal.write(BELL)
            return
        common = os.path.commonprefix(matches)
        addition = common[len(prefix) :]
        if len(matches) == 1 and not after:
            addition += " "
        if addition:
            for char in addition.encode("utf-8"):
                self.characterReceived(bytes([char]), False)
        else:
            self.show("  ".join(matches))

    def handle_INT(self) -> None:  # noqa: N802
        self.terminal.write(b"^C")
        self.terminal.nextLine()
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.historyPosition = len(self.historyLines)
        self.drawInputLine()

    def handle_EOF(self) -> None:  # noqa: N802
        """Ctrl-D: log out on an empty line, else delete under the cursor (as bash)."""
        if self.lineBuffer:
            self.handle_DELETE()
            return
        self.terminal.write(b"logout")
        self.terminal.nextLine()
        self.end(0)

    # -- commands ------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if self._gone:
            return
        self._waiting.append(line)
        if not self._busy:
            self._next()

    def _next(self) -> None:
        if not self._waiting:
            self._busy = False
            self.show(None)
            return
        self._busy = True
        line = self._waiting.popleft().decode("utf-8", "replace")
        self.commands.run(line).addCallback(self._done)

    def _done(self, result: Result) -> None:
        if self._gone:
            return
        if result.output:
            self.show(result.output)
        if result.action == "exit":
            self.end(0)
        elif result.action == "manhole":
            self._open_manhole()
        else:
            self._next()

    def show(self, text: str | None) -> None:
        """Print ``text`` above the input line, then redraw the prompt and typing.

        The cursor may sit anywhere on a half-typed line, so go to column 0,
        erase it, print, and draw the prompt (unless a command is still
        running) with the typed text, putting the cursor back where it was.
        """
        terminal = self.terminal
        terminal.write(b"\r")
        terminal.eraseToLineEnd()
        if text is not None:
            terminal.write(text.encode("utf-8") + b"\n")  # insults adds the \r
        typed = b"".join(self.lineBuffer)
        terminal.write((b"" if self._busy else PROMPT) + typed)
        if self.lineBufferIndex < len(typed):
            terminal.cursorBackward(len(typed) - self.lineBufferIndex)

    def _open_manhole(self) -> None:
        """Hand this terminal to a Python interpreter for good."""
        shell = _Manhole(self.end, {"pool": self.commands.pool})
        self.terminal.terminalProtocol = shell
        shell.makeConnection(self.terminal)


class _Manhole(manhole.ColoredManhole):
    """conch's manhole, ending the session through ``end`` (with an exit status)."""

    def __init__(self, end: Callable[[int], None], namespace: dict) -> None:
        super().__init__(namespace)
        self._end = end

    def handle_QUIT(self) -> None:  # noqa: N802
        self._end(0)

"""
``partypool-client --script``: chat from a program instead of a person.

Input: every stdin line is what a user would type (plain text is a message,
``/online``, ``/ip``, ``/msg …``, ``/request …``, ``/exit`` are commands;
with ``--root`` also ``/admin …``, ``/kick``, ``/mute``, ``/unmute``). Without
``--name``, the first line is the name (and the next one, if the server
refuses it); with ``--name``, a refused name ends the run (status 1): no
line meant as a message is taken for a name. Lines read before the name is
accepted are sent after it. At end of input the client sends ``QUIT``, once
the answers to what it sent are in, and exits.

Output: one line per event on stdout, flushed at once:

- server events and replies as the server sent them (control characters
  removed, see L{partypool.wire.scrub}):
  ``CHAT <name> <text>``, ``JOINED <name>``, ``LEFT <name> <reason>``,
  ``NOTICE <text>``, ``SHUTDOWN <seconds> <text>``, ``ERR <code> <text>``,
  ``BYE <reason>``, ``ONLINE <count> <name> …``, ``IP <host>``,
  ``OK REQUEST <id>``, ``PRIVATE <name> <text>``, ``OK MSG <name>``,
  ``REQUESTED <id> <name> <text>`` (root), ``ADMIN-OUT <line>`` and
  ``ADMIN-END <status>`` (root), and on joining the room's last messages as
  ``HISTORY <id> <time> <event line>`` lines, then ``HISTORY-END <n>``
  (``--history 0``: none); a refused message or private message is its
  ``ERR <code> <text>``;
- the client's own: ``AUTHENTICATED <server name>``, ``NAME-REFUSED
  <reason>``, ``NAMED <name>`` (``REJOINED <name>`` after a reconnect),
  ``HINT <text>`` for a line that is no command, ``HELP <command> <what>``.

Progress (connecting, reconnecting) and the final error go to stderr; the
exit status is the session's (0 after BYE, 2 when kicked, 1 on failure,
also when the room was never joined because the name was refused).
"""

from __future__ import annotations

import threading
from typing import TextIO

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads

from partypool.client.commands import HELP, ROOT_HELP
from partypool.client.protocol import HistoryEntry
from partypool.client.session import ChatSession, SessionView


class ScriptView(SessionView):
    """Prints events as lines and feeds stdin lines to the session."""

    def __init__(self, out: TextIO, err: TextIO, names_from_input: bool = True) -> None:
        self.session: ChatSession | None = None
        self._names_from_input = names_from_input
        self._out = out
        self._err = err
        self._named = False
        self._ended = False
        self._backlog: list[str] = []
        self._name_wanted: Deferred[str | None] | None = None

    def _print(self, *parts: object) -> None:
        print(*parts, file=self._out, flush=True)

    # -- input ------------------------------------------------------------

    def input_line(self, line: str) -> None:
        """One line from stdin."""
        if self._name_wanted is not None:
            wanted, self._name_wanted = self._name_wanted, None
            wanted.callback(line)
        elif self._named:
            assert self.session is not None
            self.session.handle_input(line)
        else:
            self._backlog.append(line)

    def input_ended(self) -> None:
        """Stdin is exhausted: leave once the backlog is sent."""
        self._ended = True
        if self._name_wanted is not None:
            wanted, self._name_wanted = self._name_wanted, None
            wanted.callback(None)
        elif self._named and self.session is not None:
            self.session.quit()

    # -- the session's reports --------------------------------------------

    def status(self, text: str) -> None:
        print(f"partypool-client: {text}", file=self._err, flush=True)

    def failure(self, text: str) -> None:
        print(f"partypool-client: error: {text}", file=self._err, flush=True)

    def hint(self, text: str) -> None:
        self._print("HINT", text)

    def authenticated(self, server_name: str, new_fingerprint: str | None) -> None:
        if new_fingerprint is not None:
            self.status(f"remembered the server's certificate {new_fingerprint}")
        self._print("AUTHENTICATED", server_name)

    def ask_name(self, problem: str | None) -> Deferred[str | None]:
        if problem is not None:
            self._print("NAME-REFUSED", problem)
        if not self._names_from_input:
            return succeed(None)
        if self._backlog:
            return succeed(self._backlog.pop(0))
        if self._ended:
            return succeed(None)
        self._name_wanted = Deferred()
        return self._name_wanted

    def named(self, name: str, rejoined: bool) -> None:
        self._print("REJOINED" if rejoined else "NAMED", name)
        self._named = True
        assert self.session is not None
        backlog, self._backlog = self._backlog, []
        for line in backlog:
            self.session.handle_input(line)
        if self._ended:
            self.session.quit()

    def show_help(self) -> None:
        root = self.session is not None and self.session.root
        for command, what in HELP + (ROOT_HELP if root else ()):
            self._print("HELP", command, what)

    def online(self, names: list[str]) -> None:
        self._print("ONLINE", len(names), *names)

    def ip(self, host: str) -> None:
        self._print("IP", host)

    def request_stored(self, request_id: int) -> None:
        self._print("OK REQUEST", request_id)

    def private_sent(self, name: str, text: str) -> None:
        self._print("OK MSG", name)

    def history(self, entries: list[HistoryEntry]) -> None:
        for entry in entries:
            stamp = entry.time.isoformat(timespec="milliseconds")
            stamp = stamp.replace("+00:00", "Z")
            event = f"{entry.verb} {entry.name} " if entry.name else f"{entry.verb} "
            self._print("HISTORY", entry.id, stamp, event + entry.text)
        self._print("HISTORY-END", len(entries))

    def admin_output(self, line: str) -> None:
        self._print("ADMIN-OUT", line)

    def admin_done(self, command: str, status: int) -> None:
        self._print("ADMIN-END", status)

    # -- server events ----------------------------------------------------

    def chat(self, name: str, text: str) -> None:
        self._print("CHAT", name, text)

    def joined(self, name: str) -> None:
        self._print("JOINED", name)

    def left(self, name: str, reason: str) -> None:
        self._print("LEFT", name, reason)

    def private(self, name: str, text: str) -> None:
        self._print("PRIVATE", name, text)

    def notice(self, text: str) -> None:
        self._print("NOTICE", text)

    def requested(self, request_id: int, name: str, text: str) -> None:
        self._print("REQUESTED", request_id, name, text)

    def shutdown(self, seconds: int, text: str) -> None:
        self._print("SHUTDOWN", seconds, text)

    def error(self, code: str, text: str) -> None:
        self._print("ERR", code, text)

    def bye(self, reason: str) -> None:
        self._print("BYE", reason)


def read_stdin(view: ScriptView, reactor: IReactorFromThreads, stdin: TextIO) -> None:
    """
    Feed C{stdin} lines to C{view} from a daemon thread.

    A thread rather than C{twisted.internet.stdio}: that one makes the
    terminal or pipe non-blocking, which also breaks plain C{print} to
    stdout, and it polls on Windows. A blocking read costs one thread.
    """

    def pump() -> None:
        for line in stdin:
            reactor.callFromThread(view.input_line, line.rstrip("\r\n"))
        reactor.callFromThread(view.input_ended)

    threading.Thread(target=pump, name="stdin", daemon=True).start()

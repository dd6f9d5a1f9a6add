"""
The terminal face: prompt_toolkit on Twisted's asyncio reactor.

Incoming lines are printed with C{print_formatted_text}, which draws them
above the prompt while one is running and redraws the prompt with whatever
the user had typed, so nothing clobbers a half-written line. Everything from
the network goes out as L{FormattedText} fragments: text is shown as text,
no markup or escape in a message is interpreted, and every server line was
already scrubbed of control characters by L{ChatClientProtocol} (the
server removes them too, but an impostor would not).

Each line starts with the local time (``--no-timestamps`` hides it). Private
messages are marked with a lock and the direction (``bob → you``); the
room's last messages on joining are dimmed, with the time they were said,
between two rules that mark them off from live ones.

Your own message is shown as you send it (the server confirms nothing for
``SAY``; it answers only to refuse). When it refuses one (muted, too long …)
a red line quotes it as not delivered, so the transcript never reads as if
the room got it; a private message is shown only once the server delivered
it, and quoted the same way when refused.
"""

from __future__ import annotations

import asyncio
import datetime
import zlib

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText, StyleAndTextTuples
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth
from twisted.internet.defer import Deferred

from partypool.client.commands import HELP, ROOT_HELP
from partypool.client.protocol import HistoryEntry
from partypool.client.session import ChatSession, SessionView

STYLE = Style.from_dict(
    {
        "own": "bold",
        "joined": "ansigreen",
        "left": "ansired",
        "notice": "bold ansiblack bg:ansiyellow",
        "shutdown": "bold ansiyellow",
        "error": "bold ansired",
        "ok": "ansigreen",
        "status": "italic ansibrightblack",
        "hint": "ansiyellow",
        "box": "ansicyan",
        "time": "ansibrightblack",
        "private": "bold ansimagenta",
        "history": "ansibrightblack",
        "rule": "ansibrightblack",
        "request": "bold ansicyan",
    }
)

# Green and red mean joined and left; names get the other colours.
NAME_COLOURS = (
    "ansicyan",
    "ansimagenta",
    "ansiyellow",
    "ansiblue",
    "ansibrightcyan",
    "ansibrightmagenta",
    "ansibrightyellow",
    "ansibrightblue",
)


def name_style(name: str) -> str:
    """The same colour for the same name, in every client and every run."""
    index = zlib.crc32(name.casefold().encode("utf-8")) % len(NAME_COLOURS)
    return f"bold fg:{NAME_COLOURS[index]}"


def online_box(names: list[str]) -> str:
    """The ``/online`` list in a double-line box, names centred."""
    title = f"ONLINE USERS ({len(names)})"
    inner = max([40, get_cwidth(title) + 4, *(get_cwidth(n) + 4 for n in names)])

    def row(text: str) -> str:
        left = (inner - get_cwidth(text)) // 2
        return "║" + " " * left + text + " " * (inner - left - get_cwidth(text)) + "║"

    return "\n".join(
        [
            "╔" + "═" * inner + "╗",
            row(title),
            "╠" + "═" * inner + "╣",
            *(row(name) for name in names),
            "╚" + "═" * inner + "╝",
        ]
    )


#: Characters of a refused message quoted back.
QUOTED = 60


def quote(text: str) -> str:
    """C{text} in quotes, cut to L{QUOTED} characters."""
    cut = text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"
    return f"“{cut}”"


def local_time(when: datetime.datetime, now: datetime.datetime) -> str:
    """``HH:MM`` in local time, with the date in front when not today."""
    local = when.astimezone()
    if local.date() == now.astimezone().date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


class TerminalView(SessionView):
    """Shows the session in a terminal and reads the user's lines."""

    def __init__(self, timestamps: bool = True) -> None:
        self.session: ChatSession | None = None
        self._timestamps = timestamps
        self._chat_prompt: PromptSession[str] = PromptSession(erase_when_done=True)
        self._name_prompt: PromptSession[str] = PromptSession()
        self._chat_task: asyncio.Task[None] | None = None

    def _show(self, *fragments: tuple[str, str], when: str | None = None) -> None:
        text: StyleAndTextTuples = list(fragments)
        if self._timestamps:
            when = when or datetime.datetime.now().strftime("%H:%M")
            text.insert(0, ("class:time", f"{when} "))
        print_formatted_text(FormattedText(text), style=STYLE)

    def close(self) -> None:
        """Stop reading input (the session is over)."""
        if self._chat_task is not None:
            self._chat_task.cancel()

    # -- input ------------------------------------------------------------

    def ask_name(self, problem: str | None) -> Deferred[str | None]:
        if problem is not None:
            self._show(("class:error", f"✗ {problem}"))
        return Deferred.fromFuture(asyncio.ensure_future(self._read_name()))

    async def _read_name(self) -> str | None:
        while True:
            try:
                name = await self._name_prompt.prompt_async("Enter username: ")
            except (EOFError, KeyboardInterrupt):
                return None
            if name.strip():
                return name.strip()

    async def _chat(self) -> None:
        assert self.session is not None
        session = self.session
        while True:
            try:
                line = await self._chat_prompt.prompt_async(
                    lambda: [("class:own", f"${session.name}: ")], style=STYLE
                )
            except (EOFError, KeyboardInterrupt):
                session.quit()
                return
            session.handle_input(line)

    # -- the session's reports --------------------------------------------

    def status(self, text: str) -> None:
        self._show(("class:status", f"… {text}"))

    def failure(self, text: str) -> None:
        self._show(("class:error", f"✗ {text}"))

    def hint(self, text: str) -> None:
        self._show(("class:hint", text))

    def authenticated(self, server_name: str, new_fingerprint: str | None) -> None:
        if new_fingerprint is not None:
            self._show(
                ("class:status", "First visit: remembered the server's certificate\n"),
                ("class:status", f"  SHA-256 {new_fingerprint}"),
            )
        self._show(("class:ok", "✓ Authenticated!"))
        self._show(("bold", f"🎉 Welcome to {server_name} (Party Pool)"))

    def named(self, name: str, rejoined: bool) -> None:
        if rejoined:
            self._show(("class:ok", f"✓ Reconnected as {name}"))
            return
        self._show(("class:ok", "✓ Connected as "), (name_style(name), name))
        self._show(("", "\n💬 Connected and Ready!\n📝 Type /help for commands\n"))
        self._chat_task = asyncio.ensure_future(self._chat())

    def said(self, name: str, text: str) -> None:
        self._show(("class:own", f"${name}: "), ("", text))

    def show_help(self) -> None:
        root = self.session is not None and self.session.root
        for command, what in HELP + (ROOT_HELP if root else ()):
            self._show(("bold", f"  {command:<23}"), ("", what))

    def online(self, names: list[str]) -> None:
        self._show(("class:box", online_box(names)))

    def ip(self, host: str) -> None:
        self._show(("", "Your address as the server sees it: "), ("bold", host))

    def request_stored(self, request_id: int) -> None:
        self._show(("class:ok", f"✓ Request sent to the administrator (#{request_id})"))

    def refused(self, said: str, code: str, text: str) -> None:
        self._show(
            ("class:error", "✗ not delivered: "),
            ("", quote(said)),
            ("class:error", f" — {text or code} ({code})"),
        )

    def private_refused(self, name: str, said: str, code: str, text: str) -> None:
        self._show(
            ("class:error", "✗ not delivered to "),
            (name_style(name), name),
            ("class:error", ": "),
            ("", quote(said)),
            ("class:error", f" — {text or code} ({code})"),
        )

    def private_sent(self, name: str, text: str) -> None:
        self._show(
            ("class:private", "🔒 you → "),
            (name_style(name), name),
            ("class:private", ": "),
            ("", text),
        )

    def history(self, entries: list[HistoryEntry]) -> None:
        if not entries:
            return
        now = datetime.datetime.now(datetime.UTC)
        last = (
            "the last message"
            if len(entries) == 1
            else f"the last {len(entries)} messages"
        )
        self._show(("class:rule", f"──── {last} ────"))
        for entry in entries:
            when = local_time(entry.time, now)
            if entry.verb == "CHAT":
                self._show(("class:history", f"${entry.name}: {entry.text}"), when=when)
            else:
                self._show(("class:history", f"📢 NOTICE: {entry.text}"), when=when)
        self._show(("class:rule", "──── live ────"))

    def admin_output(self, line: str) -> None:
        self._show(("", line))

    def admin_done(self, command: str, status: int) -> None:
        if status != 0:
            self._show(("class:error", f"✗ {command}: exit status {status}"))

    # -- server events ----------------------------------------------------

    def chat(self, name: str, text: str) -> None:
        self._show((name_style(name), f"${name}: "), ("", text))

    def joined(self, name: str) -> None:
        self._show(
            ("class:joined", "→ "),
            (name_style(name), name),
            ("class:joined", " joined"),
        )

    def left(self, name: str, reason: str) -> None:
        self._show(
            ("class:left", "← "),
            (name_style(name), name),
            ("class:left", f" left ({reason})" if reason else " left"),
        )

    def private(self, name: str, text: str) -> None:
        self._show(
            ("class:private", "🔒 "),
            (name_style(name), name),
            ("class:private", " → you: "),
            ("", text),
        )

    def notice(self, text: str) -> None:
        self._show(("class:notice", f" 📢 NOTICE: {text} "))

    def requested(self, request_id: int, name: str, text: str) -> None:
        self._show(
            ("class:request", f"📨 request #{request_id} from "),
            (name_style(name), name),
            ("class:request", ": "),
            ("", text),
        )

    def shutdown(self, seconds: int, text: str) -> None:
        self._show(("class:shutdown", f"⚠ The server closes in {seconds} s: {text}"))

    def error(self, code: str, text: str) -> None:
        if code == "rate-limited":
            # The server does not say which line it dropped.
            text = f"{text or code}: one of your last lines did not get through"
        self._show(("class:error", f"✗ {text or code} ({code})"))

    def bye(self, reason: str) -> None:
        if reason == "quit":
            self._show(("", "👋 Bye!"))
        else:
            self._show(("class:left", f"Disconnected by the server: {reason}"))

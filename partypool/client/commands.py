"""
What a typed line means: plain text is a room message, ``/word …`` a
command. Pure, so both faces (terminal and script) share it and tests need
no connection. A leading ``//`` sends a message that starts with ``/``.

Pasted line breaks. A paste can put line breaks (LF, CR, CR LF, NEL, VT, FF,
U+2028, U+2029) inside one input; they never reach the wire as such. The
first line says what the input is; the lines after it are more of the same
text, never commands of their own (pasting ``hi⏎/exit`` does not leave):

- a message: every non-blank line is a message of its own (the protocol
  paces them below the server's rate limit);
- ``/msg <name> …``: every non-blank line is a private message to the same
  name (private text never falls into the room);
- ``/request …``: one request, its lines joined by spaces (one thing for
  the administrator to read);
- any other command: refused with a hint, nothing sent.
"""

from __future__ import annotations

import re

import attrs

HELP = (
    ("/help", "show this list"),
    ("/online", "who is in the room"),
    ("/msg <name> <text>", "a private message to one person"),
    ("/ip", "your address as the server sees it"),
    ("/request <text>", "send a request to the administrator"),
    ("/exit", "leave (Ctrl-D works too)"),
    ("//text", "send a message that starts with /"),
)

ROOT_HELP = (
    ("/admin <command>", "run an admin command (/admin help lists them)"),
    ("/kick <name>", "remove someone from the room (/admin remove -u <name>)"),
    ("/mute <name> [seconds]", "stop someone's messages (/admin mute -u …)"),
    ("/unmute <name>", "let them speak again (/admin unmute -u <name>)"),
)

#: Every line break a paste may carry (str.splitlines' set, minus the file
#: and group separators no terminal sends as a line end).
LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")


@attrs.frozen
class Say:
    text: str


@attrs.frozen
class Msg:
    """``/msg <name> <text>``."""

    name: str
    text: str


@attrs.frozen
class Request:
    text: str


@attrs.frozen
class Admin:
    """An admin command line (``/admin``, or a shortcut spelled out)."""

    command: str


@attrs.frozen
class Simple:
    """A command without arguments: ``help``, ``online``, ``ip``, ``exit``."""

    name: str


@attrs.frozen
class Mistake:
    """A line that is no command; C{hint} tells the user what to do instead."""

    hint: str


@attrs.frozen
class Nothing:
    """An empty line: nothing to do."""


Command = Say | Msg | Request | Admin | Simple | Mistake | Nothing

_SIMPLE = frozenset({"help", "online", "ip", "exit"})


def is_name(text: str) -> bool:
    """Could C{text} be a chat name (letters, digits, ``_``, ``-``, ``.``)?
    Checked before a name goes into an admin command line."""
    return 0 < len(text) <= 64 and all(c.isalnum() or c in "_-." for c in text)


def parse_input(text: str) -> list[Command]:
    """Turn one input (a typed line, or a paste with line breaks) into what
    to do, in order; see the module docstring for pasted lines."""
    first, *more = LINE_BREAKS.split(text)
    command = parse_line(first)
    more = [line for line in more if line.strip()]
    if not more:
        return [command]
    match command:
        case Say() | Nothing():
            head = [command] if isinstance(command, Say) else []
            return head + [Say(line) for line in more]
        case Msg(name, _):
            return [command, *(Msg(name, line) for line in more)]
        case Request(request):
            return [Request(" ".join([request, *(line.strip() for line in more)]))]
        case Mistake():
            return [command]
    return [Mistake("a pasted line break after a command: nothing was sent")]


def parse_line(line: str) -> Command:
    """Turn one line without line breaks into what to do."""
    if not line.strip():
        return Nothing()
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    word, _, rest = line[1:].partition(" ")
    word = word.lower() if word.isascii() else word
    rest = rest.strip()
    if word == "request":
        return Request(rest) if rest else Mistake("usage: /request <text>")
    if word == "msg":
        name, _, message = rest.partition(" ")
        if not name or not message.strip():
            return Mistake("usage: /msg <name> <text>")
        return Msg(name, message)
    if word in ("admin", "kick", "mute", "unmute"):
        return _admin(word, rest)
    if word in _SIMPLE:
        if rest:
            return Mistake(f"/{word} takes no arguments")
        return Simple(word)
    return Mistake(f"unknown command /{word}; type /help for the list")


def _admin(word: str, rest: str) -> Command:
    """``/admin`` and its shortcuts, as admin command lines."""
    if word == "admin":
        return Admin(rest) if rest else Mistake("usage: /admin <command>")
    args = rest.split()
    if word == "mute":
        if len(args) not in (1, 2) or not is_name(args[0]):
            return Mistake("usage: /mute <name> [seconds]")
        if len(args) == 2:
            if not re.fullmatch("[0-9]{1,9}", args[1]):
                return Mistake("usage: /mute <name> [seconds] (seconds: a number)")
            return Admin(f"mute -u {args[0]} -t {args[1]}")
        return Admin(f"mute -u {args[0]}")
    if len(args) != 1 or not is_name(args[0]):
        return Mistake(f"usage: /{word} <name>")
    verb = "remove" if word == "kick" else "unmute"
    return Admin(f"{verb} -u {args[0]}")

"""
What a typed line means: plain text is a room message, ``/word …`` a
command. Pure, so both faces (terminal and script) share it and tests need
no connection. A leading ``//`` sends a message that starts with ``/``.
"""

from __future__ import annotations

import attrs

HELP = (
    ("/help", "show this list"),
    ("/online", "who is in the room"),
    ("/ip", "your address as the server sees it"),
    ("/request <text>", "send a request to the administrator"),
    ("/exit", "leave (Ctrl-D works too)"),
    ("//text", "send a message that starts with /"),
)


@attrs.frozen
class Say:
    text: str


@attrs.frozen
class Request:
    text: str


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


Command = Say | Request | Simple | Mistake | Nothing

_SIMPLE = frozenset({"help", "online", "ip", "exit"})


def parse_input(line: str) -> Command:
    """Turn one typed line into what to do."""
    if not line.strip():
        return Nothing()
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    word, _, rest = line[1:].partition(" ")
    word = word.lower()
    rest = rest.strip()
    if word == "request":
        return Request(rest) if rest else Mistake("usage: /request <text>")
    if word in _SIMPLE:
        if rest:
            return Mistake(f"/{word} takes no arguments")
        return Simple(word)
    return Mistake(f"unknown command /{word}; type /help for the list")

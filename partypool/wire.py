"""The chat wire format, with no transport in sight.

A received line becomes a `Command` or raises `WireError` carrying exactly one
protocol error code; replies and events are formatted here; names and free
text are scrubbed and checked here.  Everything in this module is pure, so
the rules of ../shared/PROTOCOL.md and docs/protocol.md are tested directly.
"""

from __future__ import annotations

import re
import unicodedata

import attrs

PROTOCOL_VERSION = "partypool/1"
NAME_MAX = 24
RESERVED_NAMES = frozenset({"root", "admin", "server", "partypool"})

# Characters removed from names and text before anyone else sees them: C0,
# DEL, C1, the line and paragraph separators (a client using str.splitlines()
# would see two lines), and the bidirectional overrides/isolates that reorder
# a terminal line.
_UNSAFE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAME_PUNCTUATION = frozenset("_-.")


class WireError(Exception):
    """A line the server answers with ``ERR <code> <text>``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


@attrs.frozen
class Command:
    """One parsed client line: an upper-case verb and its (possibly empty) argument."""

    verb: str
    argument: str = ""


# verb -> (takes an argument: "required" | "optional" | "none", usage)
VERBS = {
    "AUTH": ("required", "AUTH SCRAM-SHA-256 <base64 client-first-message>"),
    "AUTH-RESPONSE": ("required", "AUTH-RESPONSE <base64 client-final-message>"),
    "NICK": ("required", "NICK <name>"),
    "SAY": ("required", "SAY <text>"),
    "ONLINE": ("none", "ONLINE"),
    "IP": ("none", "IP"),
    "REQUEST": ("required", "REQUEST <text>"),
    "MSG": ("required", "MSG <name> <text>"),
    "HISTORY": ("optional", "HISTORY [count]"),
    "ADMIN": ("required", "ADMIN <command line>"),
    "PING": ("optional", "PING [token]"),
    "PONG": ("optional", "PONG [token]"),
    "QUIT": ("optional", "QUIT [reason]"),
}


def parse_line(raw: bytes) -> Command:
    """Turn one received line (without its ending) into a `Command`."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("bad-encoding", "line is not valid UTF-8") from None
    if not line:
        raise WireError("bad-syntax", "empty line")
    verb, _, argument = line.partition(" ")
    verb = verb.upper()
    if verb not in VERBS:
        shown = scrub(verb)[:32] or "?"
        raise WireError("unknown-command", f"unknown command {shown}")
    arity, usage = VERBS[verb]
    if arity == "required" and not argument:
        raise WireError("bad-syntax", f"usage: {usage}")
    if arity == "none" and argument:
        raise WireError("bad-syntax", f"usage: {usage}")
    return Command(verb, argument)


def scrub(text: str) -> str:
    """Remove what must never reach another user's terminal; a tab becomes a space."""
    return _UNSAFE.sub("", text.replace("\t", " "))


def clean_text(text: str, limit: int) -> str:
    """Scrub free text and check it is neither empty nor over ``limit`` characters."""
    cleaned = scrub(text).strip()
    if not cleaned:
        raise WireError("bad-syntax", "text is empty")
    if len(cleaned) > limit:
        raise WireError("text-too-long", f"text is longer than {limit} characters")
    return cleaned


def name_key(name: str) -> str:
    """The form two names are compared in: NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_name(requested: str) -> str:
    """Return the name as others will see it (NFKC), or raise ``nick-invalid``."""
    name = unicodedata.normalize("NFKC", requested)
    if not 1 <= len(name) <= NAME_MAX:
        raise WireError("nick-invalid", f"a name is 1 to {NAME_MAX} characters")
    for char in name:
        category = unicodedata.category(char)
        if not (
            category.startswith("L") or category == "Nd" or char in _NAME_PUNCTUATION
        ):
            raise WireError(
                "nick-invalid",
                "a name may hold only letters, digits, '_', '-' and '.'",
            )
    if name_key(name) in RESERVED_NAMES:
        raise WireError("nick-invalid", f"the name {name} is reserved")
    return name


def format_line(verb: str, *parts: str) -> bytes:
    """Encode one server line: the verb, its parts joined by spaces, CRLF."""
    return " ".join((verb, *parts)).encode("utf-8") + b"\r\n"


def error_line(code: str, text: str) -> bytes:
    return format_line("ERR", code, text)

"""The chat wire format, with no transport in sight.

A received line becomes a `Command` or raises `WireError` carrying exactly one
protocol error code; replies and events are formatted here; names and free
text are scrubbed and checked here.  Everything in this module is pure, so
the rules of docs/protocol.md are tested directly.
"""

from __future__ import annotations

import re
import unicodedata

import attrs

PROTOCOL_VERSION = "partypool/1"
NAME_MAX = 24
RESERVED_NAMES = frozenset({"root", "admin", "server", "partypool"})

# Removed from names and text before anyone else sees them: C0, DEL, C1, the
# line and paragraph separators (a client using str.splitlines() would see
# two lines), the bidirectional controls (Unicode's Bidi_Control: marks,
# embeddings, overrides, isolates), which reorder a terminal line, and tag
# characters -- except in an emoji tag sequence (a flag such as Scotland's:
# U+1F3F4, tags U+E0020-U+E007E, then CANCEL TAG U+E007F), which is kept.
_EMOJI_TAG_SEQUENCE = "\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f"
_UNSAFE = re.compile(
    f"({_EMOJI_TAG_SEQUENCE})"
    "|[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): what a
# renderer shows as nothing -- zero-width characters, the Hangul fillers
# U+115F, U+1160, U+3164 and U+FFA0, variation selectors, tags.  A test
# checks this list against ICU's copy of the property.
_IGNORABLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
# Characters that render blank: the ignorables, white space (U+3000 too) and
# U+2800 BRAILLE PATTERN BLANK.  A text or name made only of these is empty.
_BLANK = re.compile(f"[\\s\u2800{_IGNORABLE}]*")
_IGNORABLE_CHAR = re.compile(f"[{_IGNORABLE}]")
_NAME_PUNCTUATION = frozenset("_-.")

# The longest prefix relayed text can get: a history replay,
# "HISTORY <id> <time> <event line>", with the widest id SQLite can give.
ID_MAX = str(2**63 - 1)
HISTORY_HEAD = ("HISTORY", ID_MAX, "0000-00-00T00:00:00.000Z")


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


def ascii_upper(word: str) -> str:
    """``word`` in upper case if it is ASCII, else unchanged.

    Protocol keywords (verbs, SASL mechanism names) are matched this way:
    Unicode case mapping would make ``ſay`` (long s) the verb ``SAY``.
    """
    return word.upper() if word.isascii() else word


def parse_line(raw: bytes) -> Command:
    """Turn one received line (without its ending) into a `Command`."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("bad-encoding", "line is not valid UTF-8") from None
    if not line:
        raise WireError("bad-syntax", "empty line")
    verb, _, argument = line.partition(" ")
    verb = ascii_upper(verb)
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
    return _UNSAFE.sub(_keep_tag_sequence, text.replace("\t", " "))


def _keep_tag_sequence(match: re.Match[str]) -> str:
    return match.group(1) or ""


def visible_text(text: str) -> str:
    """Scrubbed, stripped ``text``, or "" if it would render as nothing.

    The one rule for every free text a user or the administrator sends to
    others (messages, requests, quit reasons, notices): text made only of
    white space and invisible characters (zero-width, Hangul fillers, the
    blank Braille pattern) counts as empty.
    """
    cleaned = scrub(text).strip()
    return "" if _BLANK.fullmatch(cleaned) else cleaned


def clean_text(text: str, limit: int) -> str:
    """`visible_text`, refused if empty (``bad-syntax``) or longer than ``limit``
    characters (``text-too-long``)."""
    cleaned = visible_text(text)
    if not cleaned:
        raise WireError("bad-syntax", "text is empty")
    if len(cleaned) > limit:
        raise WireError("text-too-long", f"text is longer than {limit} characters")
    return cleaned


def check_fits(text: str, max_line: int, *head: str) -> None:
    """Refuse ``text`` (``text-too-long``) if the line ``<head…> <text>`` it
    will be relayed in would pass ``max_line`` bytes with its CRLF.

    ``head`` is the longest prefix the text can get, e.g.
    ``(*HISTORY_HEAD, "CHAT", name)`` for a room message.
    """
    budget = max_line - len(format_line(*head, ""))
    size = len(text.encode("utf-8"))
    if size > budget:
        raise WireError(
            "text-too-long",
            f"the text is {size} bytes; relayed within the {max_line}-byte "
            f"line limit it may be at most {budget}",
        )


def split_to_fit(text: str, max_line: int, *head: str) -> list[str]:
    """``text`` cut, between characters, into pieces that each fit the line
    ``<head…> <piece>`` within ``max_line`` bytes (one piece if it fits).

    For output that is not a message and may be continued on the next line,
    such as root's ``ADMIN-OUT`` lines.
    """
    budget = max_line - len(format_line(*head, ""))
    pieces, piece, size = [], [], 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > budget:
            pieces.append("".join(piece))
            piece, size = [], 0
        piece.append(char)
        size += width
    pieces.append("".join(piece))
    return pieces


def name_key(name: str) -> str:
    """The form two names are compared in: NFKC, then case-folded.

    Unicode case folding is right for names (``Straße`` is ``STRASSE``);
    look-alikes in other scripts are the room's business (`partypool.room.names`).
    """
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
    if _IGNORABLE_CHAR.search(name):
        raise WireError("nick-invalid", "a name may not hold invisible characters")
    if all(char in _NAME_PUNCTUATION for char in name):
        raise WireError("nick-invalid", "a name needs a letter or a digit")
    if name_key(name) in RESERVED_NAMES:
        raise WireError("nick-invalid", f"the name {name} is reserved")
    return name


def online_lines(names: list[str], max_line: int) -> list[bytes]:
    """The reply to ``ONLINE``, split so that no line passes ``max_line``.

    ``ONLINE-PART <name> …`` lines, as many as needed, then
    ``ONLINE <count> <the remaining names>``; ``count`` is always the total.
    A name is at most 24 characters (96 bytes), so each fits a line.
    """
    count = str(len(names))
    sizes = [len(name.encode("utf-8")) + 1 for name in names]  # with its space
    last = len(format_line("ONLINE", count))
    left = sum(sizes)  # bytes the remaining names add to the ONLINE line
    lines, start = [], 0
    while last + left > max_line:
        end, size = start, len(format_line("ONLINE-PART"))
        while end < len(names) and size + sizes[end] <= max_line:
            size += sizes[end]
            end += 1
        lines.append(format_line("ONLINE-PART", *names[start:end]))
        left -= size - len(format_line("ONLINE-PART"))
        start = end
    lines.append(format_line("ONLINE", count, *names[start:]))
    return lines


def format_line(verb: str, *parts: str) -> bytes:
    """Encode one server line: the verb, its parts joined by spaces, CRLF."""
    return " ".join((verb, *parts)).encode("utf-8") + b"\r\n"


def error_line(code: str, text: str) -> bytes:
    return format_line("ERR", code, text)

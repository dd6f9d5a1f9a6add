"""The IRC wire format, with no transport in sight.

The IRC gateway's counterpart of `partypool.wire`: bytes become a `Message`
or raise `IrcWireError`; server messages are formatted here; nicknames are
mapped here.  Pure, so the rules are tested directly.

What a line is (RFC 1459 section 2.3, as modern IRC uses it, with IRCv3
message-tags)::

    [@tag=value;tag2 ][:source ]COMMAND[ param ...][ :trailing param]\\r\\n

- The stream is split on LF, dropping a CR before it (clients send CRLF, a
  few only LF).  Splitting happens on bytes, before any decoding, so a UTF-8
  character split across reads arrives whole.
- Length: at most 512 bytes for the message without its tags, the line ending
  included, plus at most 8191 for the tags section (``@``, the tags and the
  space after them).  A longer line is discarded and answered 417
  (ERR_INPUTTOOLONG); the session goes on.
- Everything after the tags must be UTF-8 (the server announces UTF8ONLY); a
  line that is not is discarded and answered ``FAIL <command> INVALID_UTF8``.
- Tag values use the IRCv3 escapes (``\\:`` ``;``, ``\\s`` space, ``\\\\``,
  ``\\r``, ``\\n``).

Nicknames: the room's names are used unchanged as IRC nicknames, in UTF-8, as
ergo does with ``CASEMAPPING=rfc8265``.  A Party Pool name is 1-24 letters of
any script, digits, ``_``, ``-`` and ``.``, none of which IRC gives another
meaning inside a ``nick!user@host`` source or a parameter, so every room member
is reachable from IRC under exactly the name the other doors show.  The other
way, an IRC user's nickname must itself be a valid Party Pool name (IRC's
``[]\\`^{|}`` are refused with 432 and the rule), so the room never needs a
second spelling of anyone.  Two names are the same nickname when they are the
same room name: NFKC, then case-folded (`partypool.wire.name_key`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping

import attrs

from partypool.doors import framing
from partypool.wire import ascii_upper

# The message without tags, its CRLF included (RFC 1459), and the tags
# section ("@", the tags, the space) that IRCv3 message-tags allows beside it.
MESSAGE_MAX = 512
TAGS_MAX = 8191
LINE_MAX = TAGS_MAX + MESSAGE_MAX

# mIRC text formatting: colour with its numbers, hex colour with its digits,
# and the one-byte toggles (bold, reset, monospace, reverse, italics, strike,
# underline).
_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?"
    r"|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPES = str.maketrans(
    {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
)


class IrcWireError(Exception):
    """A line the server answers with one error instead of handling it.

    ``kind`` is ``input-too-long`` (417), ``invalid-utf8`` (``FAIL
    INVALID_UTF8``) or ``malformed`` (no command at all); ``command`` is the
    command when it could be read, for the reply.
    """

    def __init__(self, kind: str, text: str, command: str = "*") -> None:
        super().__init__(kind, text, command)
        self.kind = kind
        self.text = text
        self.command = command


@attrs.frozen
class Message:
    """One IRC message: its tags, source, command (upper-case if ASCII:
    `partypool.wire.ascii_upper`) and parameters."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=dict)


# -- framing -------------------------------------------------------------------


class LineFramer(framing.LineFramer):
    """IRC's framing: the doors' `partypool.doors.framing.LineFramer` at
    IRC's line limit (the message and its tags)."""

    def __init__(self, max_line: int = LINE_MAX) -> None:
        super().__init__(max_line)


# -- parsing -------------------------------------------------------------------


def parse_message(raw: bytes) -> Message | None:
    """Turn one received line (without its ending) into a `Message`.

    Returns None for an empty line, which IRC ignores silently.
    """
    tags: dict[str, str] = {}
    rest = raw
    if rest.startswith(b"@"):
        section, _, rest = rest.partition(b" ")
        if len(section) + 1 > TAGS_MAX:
            raise IrcWireError("input-too-long", "Input line was too long")
        tags = _parse_tags(section[1:])
    rest = rest.lstrip(b" ")
    if len(rest) + 2 > MESSAGE_MAX:
        raise IrcWireError("input-too-long", "Input line was too long")
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        words = split_words(rest.decode("utf-8", "replace"))
        if words and words[0].startswith(":"):
            words = words[1:]
        raise IrcWireError(
            "invalid-utf8",
            "Message rejected, your message is not UTF-8",
            ascii_upper(words[0]) if words else "*",
        ) from None
    if not text.strip(" "):
        if tags:
            raise IrcWireError("malformed", "Message has tags but no command")
        return None
    source = None
    if text.startswith(":"):
        source, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    command, params = _split_params(text)
    if not command:
        raise IrcWireError("malformed", "Message has no command")
    if "\0" in text or "\r" in text:
        raise IrcWireError("malformed", "Message holds NUL or CR", ascii_upper(command))
    return Message(ascii_upper(command), tuple(params), source or None, tags)


def _split_params(text: str) -> tuple[str, list[str]]:
    head, colon, trailing = text.partition(" :")
    if text.startswith(":"):  # no command, only a trailing parameter
        return "", []
    words = split_words(head)
    if not words:
        return "", []
    params = words[1:]
    if colon:
        params.append(trailing)
    return words[0], params


def split_words(text: str) -> list[str]:
    """``text`` split at spaces: IRC's only separator (``str.split()`` would
    also split at U+3000, U+0085 and the other Unicode spaces)."""
    return [word for word in text.split(" ") if word]


def _parse_tags(section: bytes) -> dict[str, str]:
    try:
        text = section.decode("utf-8")
    except UnicodeDecodeError:
        raise IrcWireError(
            "invalid-utf8", "Message rejected, its tags are not UTF-8"
        ) from None
    tags = {}
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if key:
            tags[key] = unescape_tag_value(value)
    return tags


def unescape_tag_value(value: str) -> str:
    """Undo the IRCv3 tag-value escapes; a lone trailing backslash is dropped."""
    if "\\" not in value:
        return value
    out = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_TAG_UNESCAPES.get(following, following))
        else:
            out.append(char)
    return "".join(out)


def escape_tag_value(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


# -- formatting ----------------------------------------------------------------


def format_message(
    command: str,
    *params: str,
    source: str | None = None,
    tags: Mapping[str, str] | None = None,
    trailing: bool = False,
) -> bytes:
    """Encode one server message with its CRLF, within `MESSAGE_MAX` bytes.

    The last parameter is sent as a trailing one (``:``) when it must be
    (empty, a space, a leading colon) or ``trailing`` asks (free text, as
    most servers send it); earlier parameters must be plain words.

    Every line the gateway sends is made here, so this is where IRC's limit
    is kept: a message longer than 512 bytes (tags aside) has its last
    parameter cut, between characters, to fit.  That is the right cut for a
    last parameter of free text (a quit reason, a topic, a PONG token); a
    reply that carries a list splits it first (`pack`), and one whose text
    ends in something that must stay (``ERROR``'s ``(reason)``) cuts its own
    free part (`cut_text`), so the cut here is their safety net.  The earlier
    parameters are bounded (names, the server's source, `_word`-cut echoes);
    if they alone passed the limit that would be a bug: ValueError.
    """
    head = []
    if source is not None:
        head.append(":" + source)
    head.append(command)
    last = None
    if params:
        *middle, last = params
        for param in middle:
            if not param or " " in param or param.startswith(":"):
                raise ValueError(f"not a middle parameter: {param!r}")
        head.extend(middle)
    message = " ".join(head)
    if last is not None:
        if trailing or not last or " " in last or last.startswith(":"):
            last = ":" + last
        message += " " + last
    data = message.encode("utf-8") + b"\r\n"
    if len(data) > MESSAGE_MAX:
        room = MESSAGE_MAX - len(" ".join(head).encode("utf-8")) - len(" :\r\n")
        if last is None or room < 0:
            raise ValueError(f"{command} passes {MESSAGE_MAX} bytes before its text")
        cut = cut_text(params[-1], room)
        data = f"{' '.join(head)} :{cut}\r\n".encode()
    if tags:
        section = ";".join(
            f"{key}={escape_tag_value(value)}" if value else key
            for key, value in tags.items()
        )
        data = f"@{section} ".encode() + data
    return data


def cut_text(text: str, room: int) -> str:
    """``text`` cut to at most ``room`` UTF-8 bytes, between characters."""
    data = text.encode("utf-8")
    if len(data) <= room:
        return text
    return data[: max(room, 0)].decode("utf-8", "ignore")


def text_room(command: str, *params: str, source: str | None = None) -> int:
    """The bytes a last parameter of free text has after ``command`` and
    ``params`` in a message of `MESSAGE_MAX` bytes."""
    used = format_message(command, *params, "", source=source, trailing=True)
    return MESSAGE_MAX - len(used)


def pack(words: list[str], room: int, most: int | None = None) -> Iterator[list[str]]:
    """``words`` in rows that, joined by spaces, take at most ``room`` UTF-8
    bytes (and hold at most ``most`` words): how a list too long for one
    reply is split over several (353 NAMES, 302 USERHOST, 005 ISUPPORT)."""
    row: list[str] = []
    size = -1
    for word in words:
        width = len(word.encode("utf-8")) + 1
        if row and (size + width > room or len(row) == most):
            yield row
            row, size = [], -1
        row.append(word)
        size += width
    if row:
        yield row


def split_text(text: str, room: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``room`` UTF-8 bytes each.

    A piece ends at the last space that fits, else between two characters
    (never inside one); the space a cut is made at goes with the next piece's
    start removed, so no piece is empty and nothing but that space is lost.
    """
    if room < 4:
        raise ValueError("no room for even one character")
    pieces = []
    data = text.encode("utf-8")
    while len(data) > room:
        cut = room
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: back off
            cut -= 1
        space = data.rfind(b" ", 0, cut + 1)
        if space > 0:
            pieces.append(data[:space].decode("utf-8"))
            data = data[space + 1 :]
        else:
            pieces.append(data[:cut].decode("utf-8"))
            data = data[cut:]
    if data or not pieces:
        pieces.append(data.decode("utf-8"))
    return pieces


def room_text(text: str) -> str | None:
    """What the room carries of a PRIVMSG's text: formatting codes removed (a
    colour's numbers too, which scrubbing alone would leave), ``/me text``
    (CTCP ACTION) as ``* text``, and None for any other CTCP (``VERSION``,
    ``PING``…), which is client-to-client and not for the room."""
    if text.startswith("\x01"):
        command, _, rest = text.strip("\x01").partition(" ")
        if ascii_upper(command) != "ACTION":
            return None
        text = "* " + rest
    return _FORMATTING.sub("", text)


def server_time(seconds: float) -> str:
    """The ``time`` tag of IRCv3 server-time: UTC, milliseconds, a ``Z``."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


CHANNEL_MAX = 32


def check_channel(name: str) -> bool:
    """Whether ``name`` may be the room's channel: ``#`` and a plain word."""
    body = name[1:]
    return (
        name.startswith("#")
        and 1 <= len(body) < CHANNEL_MAX
        and all(c.isascii() and (c.isalnum() or c in "_-.") for c in body)
    )

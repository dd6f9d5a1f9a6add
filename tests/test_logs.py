"""Every log format writes hostile text as escaped text, on its own line.

Each hostile input is tried in every place it could reach a line (a field, the
format string itself as conch uses it, an exception's message under its
traceback, a legacy ``log.msg``) and in every format: ``text`` (twistd's own
observer, through `logs.text_observer`), ``journal`` and ``json``.  Then the
chat port is fed hostile lines and everything it logs goes through the same
check, and conch's chatter is checked to be dropped.
"""

from __future__ import annotations

import base64
import json
import sys
import unicodedata

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python import log as legacy_log
from twisted.python.failure import Failure

from partypool import logs
from tests.helpers import connect, make_pool

FORGED = "[partypool.admin#critical] root logged in"
HOSTILE = {
    "newline": f"x\n{FORGED}",
    "journal priority": f"x\n<2>{FORGED}",
    "carriage return": f"x\r{FORGED}",
    "terminal escape": "x\x1b[2J\x1b]0;owned\x07",
    "C1 next line": f"x\x85{FORGED}",
    "line separator": f"x\u2028{FORGED}",
    "file separator": f"x\x1c{FORGED}",
    "NUL and DEL": "x\x00\x7f",
    # Format characters (Unicode Cf): bidi controls reverse or move the rest
    # of the line on the reader's terminal, invisible ones hide text.
    "right-to-left override": f"x\u202e{FORGED[::-1]}",
    "bidi isolate": f"x\u2067{FORGED}\u2069",
    "bidi marks": f"x\u061c\u200e\u200f{FORGED}",
    "bidi embedding": f"x\u202a\u202b\u202c\u202d{FORGED}",
    "invisible": f"x\u200b\u2060\ufeff\u00ad{FORGED}",
    "tags": f"x\U000e0001\U000e0041\U000e007f{FORGED}",
}
RAW = set(
    "\r\x0b\x0c\x1b\x00\x7f\x85\u2028\u2029\x1c\x07"
    "\u202e\u2067\u2069\u061c\u200e\u200f\u202a\u202b\u202c\u202d"
    "\u200b\u2060\ufeff\u00ad\U000e0001\U000e0041\U000e007f"
)


def events(text: str) -> dict[str, dict]:
    """One event per way ``text`` can reach a line, as the loggers make them."""
    made: list[dict] = []
    publisher = LogPublisher(made.append)
    log = Logger(namespace="partypool.test", observer=publisher)
    log.info("login failed from {peer}: {reason}", peer="192.0.2.1:5", reason=text)
    log.error(text)  # conch's way: client text as the format string
    try:
        raise ValueError(f"bad name {text}")
    except ValueError:
        log.failure("handling a line", Failure())
    legacy_log.addObserver(made.append)
    try:
        legacy_log.msg(text)
    finally:
        legacy_log.removeObserver(made.append)
    return dict(zip(("field", "format", "traceback", "legacy"), made, strict=True))


def text_lines(event: dict, capsys) -> list[str]:
    """What twistd's own text observer, as ``--log-format text`` feeds it, writes."""
    logs.write_like_twistd({"nodaemon": True})
    logs.text_observer()(event)
    return capsys.readouterr().out.split("\n")[:-1]


def assert_clean(lines: list[str]) -> None:
    """No character in these lines that a reader obeys instead of showing, and
    the forged entry only ever after the escape that kept it on its line."""
    for line in lines:
        assert not RAW & set(line), repr(line)
        assert FORGED not in line or "x\\" in line, repr(line)


@pytest.mark.parametrize("where", ["field", "format", "traceback", "legacy"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_every_format_keeps_hostile_text_on_its_line(name, where, capsys):
    event = events(HOSTILE[name])[where]
    traceback = where == "traceback"

    text = text_lines(event, capsys)
    assert_clean(text)
    assert text[0][:4].isdigit() and all(line.startswith("\t") for line in text[1:])
    assert len(text) == 1 or traceback

    journal = logs.journal_line(event).split("\n")[:-1]
    assert_clean(journal)
    priority = "<2>" if traceback else "<3>" if where == "format" else "<6>"
    assert all(line.startswith(priority) for line in journal), journal
    assert all(line.startswith(priority + "[") for line in journal[:1])
    assert len(journal) == 1 or traceback

    line = logs.json_line(event)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert_clean([line])
    record = json.loads(line)
    assert "\n" not in record["message"]
    if where == "field":
        assert record["reason"] == HOSTILE[name]  # the raw value, losslessly
        assert record["message"].startswith("login failed from 192.0.2.1:5: x\\")


def test_escapes_are_readable():
    assert logs.escape("a\nb\r\tc\x1b\x85\u2028") == "a\\nb\\r\\tc\\x1b\\x85\\u2028"
    assert logs.escape("\u202eb\U000e0041") == "\\u202eb\\U000e0041"
    assert (
        logs.escape("plain text, ünïcödé, emoji 🎉") == "plain text, ünïcödé, emoji 🎉"
    )


def test_hostile_chat_lines_reach_no_log_raw(capsys):
    """Whatever the chat port logs about hostile input is one clean line."""
    made: list[dict] = []
    from twisted.logger import globalLogPublisher

    globalLogPublisher.addObserver(made.append)
    try:
        pool = make_pool()
        for text in HOSTILE.values():
            b64 = base64.b64encode(f"n,,n=chat{text},r=abc".encode()).decode()
            for line in (
                f"AUTH SCRAM-SHA-256 {b64}",
                f"AUTH {text}",
                f"NICK {text}",
                f"QUIT {text}",
            ):
                peer = connect(pool, host="192.0.2.9")
                peer.send(line.encode("utf-8", "surrogateescape"))
                peer.lose()
    finally:
        globalLogPublisher.removeObserver(made.append)
    assert made
    for event in made:
        assert_clean(text_lines(event, capsys))
        assert logs.journal_line(event).count("\n") == 1
        assert logs.json_line(event).count("\n") == 1


def test_conch_chatter_is_dropped_and_its_warnings_kept():
    shown: list[dict] = []
    quiet = logs.quiet(shown.append)
    for namespace, level in [
        ("twisted.conch.ssh.connection.SSHConnection", LogLevel.info),
        ("partypool.admin.ssh.AdminServerTransport", LogLevel.debug),
        ("partypool.admin.ssh.AdminFactory", LogLevel.info),
        ("twisted.conch.ssh.transport.SSHServerTransport", LogLevel.warn),
        ("partypool.admin", LogLevel.info),
        ("partypool.doors.chat", LogLevel.debug),
    ]:
        quiet({"log_namespace": namespace, "log_level": level, "log_format": "x"})
    assert [(e["log_namespace"], e["log_level"]) for e in shown] == [
        ("twisted.conch.ssh.transport.SSHServerTransport", LogLevel.warn),
        ("partypool.admin", LogLevel.info),
    ]


# Every character the rule covers: control (Cc), format (Cf, the bidi
# controls among them), line and paragraph separators (Zl, Zp).
HIDDEN = "".join(
    chr(c)
    for c in range(sys.maxunicode + 1)
    if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp")
)


def test_every_control_and_format_character_is_escaped_in_every_format(capsys):
    """One rule, every code point it names, in each format: not one raw."""
    made: list[dict] = []
    log = Logger(namespace="partypool.test", observer=LogPublisher(made.append))
    log.info("from the client: {text}", text=HIDDEN)
    [event] = made
    assert "\\u202e" in logs.escape(HIDDEN)
    for line in (
        *text_lines(event, capsys),
        logs.journal_line(event),
        logs.json_line(event),
    ):
        body = line.removesuffix("\n")
        assert not set(HIDDEN) & set(body), ascii(set(HIDDEN) & set(body))
    record = json.loads(logs.json_line(event))
    assert record["text"] == HIDDEN  # the raw value, losslessly
    assert "\\u202e" in record["message"] and "\\U000e0041" in record["message"]


def test_a_lone_surrogate_is_escaped_not_a_write_error():
    """A lone surrogate cannot be written as UTF-8: escaped, it can."""
    assert logs.escape("x\udcff") == "x\\udcff"
    logs.journal_line({"log_format": "{t}", "t": "x\udcff"}).encode()
    logs.json_line({"log_format": "{t}", "t": "x\udcff"}).encode()

"""The server's log formats, as observer factories for twistd's ``--logger``.

`partypool.tap` hands twistd one of these for ``--log-format``:

- ``text`` (`text_observer`): twistd's own format and destination (stdout
  with ``-n``, ``--logfile``, or ``--syslog``), cleaned as below.
- ``journal`` (`journal_observer`): journald stamps every line with the time
  itself, so the line carries none; it starts with a ``<N>`` syslog priority,
  which journald (``SyslogLevelPrefix=yes``, the default) turns into the
  entry's priority so ``journalctl -p warning`` works.
- ``json`` (`json_observer`): one JSON object per line for log shippers:
  ``time`` (UTC, ISO 8601), ``level``, ``namespace``, ``message``, the event's
  own fields (such as ``address`` or ``fp``) and ``traceback`` for errors.

Every format gets the same two treatments:

- Escaping.  Log text carries client input (addresses are safe, but an SSH
  client chooses its key algorithm name, a TLS library quotes what it was
  sent, an exception quotes a bad value).  Control characters (C0, DEL, C1),
  format characters (Unicode category Cf: bidi controls, zero-width
  characters, tags), the Unicode line and paragraph separators and lone
  surrogates are written as backslash escapes (``\\n``, ``\\r``, ``\\t``,
  ``\\x1b``, ``\\x85``, ``\\u202e``, ``\\u2028``), so no input can start a
  line of its own (a forged entry, or in the journal a forged priority),
  send escape sequences to the terminal of whoever reads the log, reorder
  the rest of its line (U+202E) or hide text.  A message is always one line;
  only a traceback spans lines, one line per frame, each escaped.  JSON
  keeps the raw field values, encoded (``\\u202e``) so that the line stays
  one line and shows the same.
- Quieting.  Debug events are dropped, and so is conch's info chatter (a dozen
  lines per SSH login: key exchange, services, channels); its warnings and
  errors stay.  The admin port logs the login, the commands and the logout
  itself (`partypool.admin.ssh`).
"""

from __future__ import annotations

import datetime
import json
import sys
import unicodedata
from collections.abc import Callable, Mapping

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    formatEvent,
)
from twisted.python.failure import Failure
from twisted.python.reflect import safe_str
from zope.interface import provider

# syslog priorities as journald reads them from a "<N>" line prefix
PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}

# Namespaces whose info events are chatter: conch's own classes, and ours
# that subclass them (a Logger attribute names its events after the class).
CHATTY = ("twisted.conch", "partypool.admin.ssh")

# Keys of twisted.python.log's legacy events, which are not the event's fields.
_LEGACY = {"message", "format", "isError", "system", "time", "why", "failure"}

# What is escaped: the Unicode categories of characters a terminal or viewer
# obeys instead of showing.  Cc: C0, DEL and C1 (line ends, ESC); Cf: format
# characters, among them the bidi controls (U+061C, U+200E/F, U+202A-E,
# U+2066-9) that reorder the rest of a line, zero-width characters and tags
# that hide text; Zl and Zp: U+2028 and U+2029, which some readers break
# lines on; Cs: a lone surrogate, which cannot even be written as UTF-8.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def _text_escape(code: int) -> str:
    """Python's spelling: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0041``."""
    if code in _NAMED:
        return _NAMED[code]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escape(code: int) -> str:
    """JSON's spelling: ``\\u202e``, and a surrogate pair above U+FFFF."""
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escaped(text: str, spell: Callable[[int], str]) -> str:
    """``text`` with each `_HIDDEN` character spelled by ``spell``.

    ``isprintable()`` is False for every such character, so most text is
    returned as it is; otherwise the category is looked up once per distinct
    character that is not printable, not once per character.
    """
    if text.isprintable():
        return text
    table = {
        ord(char): spell(ord(char))
        for char in set(text)
        if not char.isprintable() and unicodedata.category(char) in _HIDDEN
    }
    return text.translate(table)


def escape(text: str) -> str:
    """``text`` on one line, every control and format character (`_HIDDEN`)
    as a backslash escape."""
    return _escaped(text, _text_escape)


def traceback_lines(failure: Failure) -> list[str]:
    """The traceback of ``failure``, one escaped line per line.

    The exception's message may quote input; it is escaped as a whole first,
    so a newline in it cannot make a line of its own.
    """
    text = failure.getTraceback()
    message = safe_str(failure.value)
    if message and escape(message) != message:
        text = text.replace(message, escape(message))
    return [escape(line) for line in text.rstrip("\n").split("\n")]


def cleaned(event: LogEvent) -> LogEvent:
    """A copy of ``event`` that any observer renders escaped (see the module).

    It keeps what observers use to place the line (time, level, namespace,
    system) and replaces the rest with the escaped message, followed by the
    traceback's lines if there is one.
    """
    lines = [escape(formatEvent(event))]
    if "log_failure" in event:
        lines += traceback_lines(event["log_failure"])
    copy: LogEvent = {"log_format": "{text}", "text": "\n".join(lines)}
    for key in ("log_time", "log_level", "log_namespace", "log_system"):
        if key in event:
            value = event[key]
            copy[key] = escape(value) if isinstance(value, str) else value
    return copy


def journal_line(event: LogEvent) -> str:
    """``<6>[namespace#info] text``, every traceback line prefixed too."""
    priority = PRIORITY.get(event.get("log_level"), 6)
    text = eventAsText(cleaned(event), includeTimestamp=False)
    return "".join(f"<{priority}>{line}\n" for line in text.split("\n"))


def json_line(event: LogEvent) -> str:
    """One JSON object and a newline: see the module docstring for its keys."""
    level = event.get("log_level")
    record: dict[str, object] = {
        "time": datetime.datetime.fromtimestamp(
            event.get("log_time", 0), datetime.UTC
        ).isoformat(timespec="milliseconds"),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "message": escape(formatEvent(event)),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY or key in record:
            continue
        ok = value is None or isinstance(value, str | int | float | bool)
        record[key] = value if ok else str(value)
    if "log_failure" in event:
        record["traceback"] = "\n".join(traceback_lines(event["log_failure"]))
    line = json.dumps(record, ensure_ascii=False)
    # json.dumps already escapes C0; this escapes what it leaves raw.
    return _escaped(line, _json_escape) + "\n"


def quiet(observer: ILogObserver) -> ILogObserver:
    """``observer`` without debug events or conch's chatter (see the module)."""
    levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    for namespace in CHATTY:
        levels.setLogLevelForNamespace(namespace, LogLevel.warn)
    return FilteringLogObserver(observer, [levels])


def journal_observer() -> ILogObserver:
    """The ``--log-format journal`` observer (twistd's ``--logger`` factory)."""
    return quiet(FileLogObserver(sys.stdout, journal_line))


def json_observer() -> ILogObserver:
    """The ``--log-format json`` observer (twistd's ``--logger`` factory)."""
    return quiet(FileLogObserver(sys.stdout, json_line))


# twistd's options, for text_observer: where twistd itself would write.
_twistd_options: Mapping[str, object] = {}


def write_like_twistd(options: Mapping[str, object]) -> None:
    """Have `text_observer` write where twistd would (its ``-n``, ``--logfile``,
    ``--syslog``); ``options`` are twistd's, read when logging starts."""
    global _twistd_options
    _twistd_options = options


def text_observer() -> ILogObserver:
    """The ``--log-format text`` observer: twistd's own, fed cleaned events.

    twistd builds its observer (file, rotation on SIGUSR1, syslog) from its
    options; this asks twistd's logger class for exactly that observer.
    """
    from twisted.scripts.twistd import _SomeApplicationRunner

    target = _SomeApplicationRunner.loggerFactory(_twistd_options)._getLogObserver()
    if not ILogObserver.providedBy(target):  # --syslog's is a legacy observer
        target = LegacyLogObserverWrapper(target)

    @provider(ILogObserver)
    def write(event: LogEvent) -> None:
        target(cleaned(event))

    return quiet(write)

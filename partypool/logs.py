"""Log formats twistd lacks, as observer factories for its ``--logger``.

``--log-format journal`` and ``--log-format json`` choose one of these (see
`partypool.tap`); twistd calls the factory before it redirects stdout, so
both write to the real standard output.

- ``journal``: journald stamps every line with the time itself, so the line
  carries none; it starts with a ``<N>`` syslog priority, which journald
  (``SyslogLevelPrefix=yes``, the default) turns into the entry's priority
  so ``journalctl -p warning`` works.
- ``json``: one JSON object per line for log shippers: ``time`` (UTC, ISO
  8601), ``level``, ``namespace``, ``message``, the event's own fields (such
  as ``address`` or ``fp``) and ``traceback`` for errors.
"""

from __future__ import annotations

import datetime
import json
import sys

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    eventAsText,
    formatEvent,
)

# syslog priorities as journald reads them from a "<N>" line prefix
PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}

# Keys of twisted.python.log's legacy events, which are not the event's fields.
_LEGACY = {"message", "format", "isError", "system", "time", "why", "failure"}


def journal_line(event: LogEvent) -> str:
    """``<6>[namespace#info] text``, every traceback line prefixed too."""
    priority = PRIORITY.get(event.get("log_level"), 6)
    text = eventAsText(event, includeTimestamp=False)
    return "".join(f"<{priority}>{line}\n" for line in text.splitlines())


def json_line(event: LogEvent) -> str:
    """One JSON object and a newline: see the module docstring for its keys."""
    level = event.get("log_level")
    record: dict[str, object] = {
        "time": datetime.datetime.fromtimestamp(
            event.get("log_time", 0), datetime.UTC
        ).isoformat(timespec="milliseconds"),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY or key in record:
            continue
        ok = value is None or isinstance(value, str | int | float | bool)
        record[key] = value if ok else str(value)
    if "log_failure" in event:
        record["traceback"] = event["log_failure"].getTraceback()
    return json.dumps(record, ensure_ascii=False) + "\n"


def journal_observer() -> ILogObserver:
    """The ``--log-format journal`` observer (twistd's ``--logger`` factory)."""
    return FileLogObserver(sys.stdout, journal_line)


def json_observer() -> ILogObserver:
    """The ``--log-format json`` observer (twistd's ``--logger`` factory)."""
    return FileLogObserver(sys.stdout, json_line)

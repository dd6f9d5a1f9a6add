"""Durable data in SQLite: users' requests, the administrator's bans, and the
room's history (`partypool.room.history`).

The schema is a sequence of numbered SQL files in ``schema/``, applied in
order at start-up and recorded in ``PRAGMA user_version``; they may call
``address_group()`` (`partypool.room.addresses.address_group`).  Every write is
committed with WAL and ``synchronous=FULL`` before its Deferred fires, so an
``OK REQUEST`` survives a crash of the server right after it.  The blocking
calls run in adbapi's thread, never on the reactor.
"""

from __future__ import annotations

import datetime
import sqlite3
from importlib import resources
from pathlib import Path

import attrs
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred

from partypool.room.addresses import address_group
from partypool.room.history import Entry
from partypool.room.room import Event
from partypool.wire import name_key


@attrs.frozen
class Request:
    id: int
    created_at: str
    name: str
    address: str
    text: str


class TooManyRequests(Exception):
    """A user (by name or by address) has stored its requests for the day."""


@attrs.frozen
class Ban:
    kind: str  # "ip" or "name"
    value: str
    created_at: str
    reason: str


def utc_now(ago: datetime.timedelta = datetime.timedelta(0)) -> str:
    """UTC now (or ``ago`` before now) as the database keeps times."""
    moment = datetime.datetime.now(datetime.UTC) - ago
    return moment.isoformat(timespec="seconds")


#: The window ``--max-requests-per-day`` counts over.
REQUEST_WINDOW = datetime.timedelta(days=1)


def _configure(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA secure_delete=ON")  # an erased message is gone


def _schema_files() -> list[tuple[int, str]]:
    files = resources.files("partypool.room") / "schema"
    return sorted(
        (int(f.name.split("-", 1)[0]), f.read_text("utf-8"))
        for f in files.iterdir()
        if f.name.endswith(".sql")
    )


def migrate(path: Path) -> None:
    """Bring the database at ``path`` to the newest schema (blocking; start-up only)."""
    connection = sqlite3.connect(path)
    try:
        _configure(connection)
        connection.create_function(
            "address_group", 1, address_group, deterministic=True
        )
        (current,) = connection.execute("PRAGMA user_version").fetchone()
        for version, sql in _schema_files():
            if version > current:
                connection.executescript(
                    f"BEGIN; {sql}; PRAGMA user_version = {version}; COMMIT;"
                )
    finally:
        connection.close()
    path.chmod(0o600)


def load_bans(path: Path) -> list[Ban]:
    """Read the bans synchronously, for start-up before any client connects."""
    connection = sqlite3.connect(path)
    try:
        return [Ban(*row) for row in connection.execute(_SELECT_BANS)]
    finally:
        connection.close()


_SELECT_BANS = "SELECT kind, value, created_at, reason FROM bans ORDER BY created_at"


def load_history(path: Path, keep: int, since: float) -> tuple[list[Entry], int]:
    """The last ``keep`` history entries said at or after ``since``, oldest
    first, and the last id ever given (start-up only, before any client)."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT id, at, verb, name, text FROM history WHERE at >= ?"
            " ORDER BY id DESC LIMIT ?",
            (since, keep),
        ).fetchall()
        last = connection.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'history'"
        ).fetchone()
    finally:
        connection.close()
    entries = [
        Entry(id, at, _event(verb, name, text)) for id, at, verb, name, text in rows
    ]
    entries.reverse()
    return entries, last[0] if last else 0


def _event(verb: str, name: str | None, text: str) -> Event:
    return Event(verb, (name, text) if verb == "CHAT" else (text,))


def _row(entry: Entry) -> tuple[int, float, str, str | None, str]:
    event = entry.event
    name = event.parts[0] if event.verb == "CHAT" else None
    return entry.id, entry.at, event.verb, name, event.parts[-1]


class Store:
    """Asynchronous access to the Party Pool database."""

    def __init__(self, path: Path) -> None:
        migrate(path)
        self.path = path
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            str(path),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_configure,
        )

    def add_request(
        self, name: str, address: str, text: str, *, per_day: int
    ) -> Deferred[int]:
        """Store a request; fires with its id once committed.

        Fails with `TooManyRequests` if ``per_day`` requests were stored in
        the last 24 hours under the same name (compared as `name_key`
        compares, so a change of case is the same user) or from ``address``'s
        group (`address_group`: an IPv6 /64 is one address, as for every
        per-address rule), counted and inserted in one transaction, so
        parallel requests cannot pass the limit together.  The exact
        ``address`` is kept too, for the administrator.
        """

        key, group = name_key(name), address_group(address)

        def insert(cursor: sqlite3.Cursor) -> int:
            since = utc_now(REQUEST_WINDOW)
            (count,) = cursor.execute(
                "SELECT count(*) FROM requests WHERE id IN ("
                " SELECT id FROM requests WHERE name_key = ? AND created_at > ?"
                " UNION SELECT id FROM requests"
                " WHERE address_group = ? AND created_at > ?)",
                (key, since, group, since),
            ).fetchone()
            if count >= per_day:
                raise TooManyRequests(count)
            cursor.execute(
                "INSERT INTO requests"
                " (created_at, name, name_key, address, address_group, text)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (utc_now(), name, key, address, group, text),
            )
            return cursor.lastrowid

        return self._pool.runInteraction(insert)

    def recent_requests(self, limit: int) -> Deferred[list[Request]]:
        d = self._pool.runQuery(
            "SELECT id, created_at, name, address, text FROM requests"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return d.addCallback(lambda rows: [Request(*row) for row in rows])

    def add_ban(self, kind: str, value: str, reason: str = "") -> Deferred[None]:
        return self._pool.runOperation(
            "INSERT OR REPLACE INTO bans (kind, value, created_at, reason)"
            " VALUES (?, ?, ?, ?)",
            (kind, value, utc_now(), reason),
        )

    def remove_ban(self, kind: str, value: str) -> Deferred[bool]:
        def delete(cursor: sqlite3.Cursor) -> bool:
            cursor.execute(
                "DELETE FROM bans WHERE kind = ? AND value = ?", (kind, value)
            )
            return cursor.rowcount > 0

        return self._pool.runInteraction(delete)

    def bans(self) -> Deferred[list[Ban]]:
        return self._pool.runQuery(_SELECT_BANS).addCallback(
            lambda rows: [Ban(*row) for row in rows]
        )

    def add_history(self, entries: list[Entry], first_kept: int) -> Deferred[None]:
        """Write ``entries`` and drop the rows older than id ``first_kept``, in
        one transaction, so the table never holds more than the history keeps
        (`partypool.room.history` writes one batch at a time, in order)."""

        def insert(cursor: sqlite3.Cursor) -> None:
            cursor.executemany(
                "INSERT INTO history (id, at, verb, name, text) VALUES (?, ?, ?, ?, ?)",
                [_row(entry) for entry in entries],
            )
            cursor.execute("DELETE FROM history WHERE id < ?", (first_kept,))

        return self._pool.runInteraction(insert)

    def prune_history(self, before: float, first_kept: int) -> Deferred[int]:
        """Delete entries said before ``before`` or older than id ``first_kept``;
        fires with how many went."""

        def delete(cursor: sqlite3.Cursor) -> int:
            cursor.execute(
                "DELETE FROM history WHERE at < ? OR id < ?", (before, first_kept)
            )
            return cursor.rowcount

        return self._pool.runInteraction(delete)

    def clear_history(self) -> Deferred[int]:
        def delete(cursor: sqlite3.Cursor) -> int:
            cursor.execute("DELETE FROM history")
            return cursor.rowcount

        return self._pool.runInteraction(delete)

    def close(self) -> None:
        self._pool.close()

"""The room's memory for late joiners: the last messages said to everyone.

What is kept: each ``CHAT`` and each ``NOTICE`` to all, the last
``--history`` of them (0 keeps none), for at most ``--history-days`` days.
Private messages, joins and leaves are never kept.

The room never waits for the database.  `History.record` keeps the entry in
memory (the last N, which is all ``HISTORY`` ever reads) and writes it behind:
one write at a time, in order, and whatever was said while one was under way
goes in the next, as one transaction.  The rows are loaded at start-up, so a
restart keeps them, and a `HistoryService` prunes expired ones on a timer
and, when the server stops, waits for the last write.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Iterable
from typing import Protocol

import attrs
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool.room.room import Event

log = Logger(namespace="partypool.room.history")

DAY = 86400.0
DEFAULT_COUNT = 50  # HISTORY without a count
PRUNE_EVERY = 3600.0  # seconds between two prunings of expired rows


@attrs.frozen
class Entry:
    """One kept event: its id (increasing, never reused) and when it was said."""

    id: int
    at: float  # seconds since the epoch
    event: Event

    @property
    def time(self) -> str:
        """``at`` in UTC, RFC 3339 with milliseconds and a ``Z``."""
        moment = datetime.datetime.fromtimestamp(self.at, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HistoryStore(Protocol):
    """The database side (`partypool.room.store.Store`)."""

    def add_history(self, entries: list[Entry]) -> Deferred[None]: ...

    def prune_history(self, before: float, first_kept: int) -> Deferred[int]: ...

    def clear_history(self) -> Deferred[int]: ...


class History:
    """The last ``keep`` room messages, in memory and (behind) in the database."""

    def __init__(
        self,
        store: HistoryStore,
        clock: IReactorTime,
        keep: int,
        days: float,
        entries: Iterable[Entry] = (),
        last_id: int = 0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.keep = keep
        self.days = days
        self._recent: collections.deque[Entry] = collections.deque(entries, keep)
        self._last_id = last_id
        self._unwritten: list[Entry] = []
        self._writing: Deferred[None] | None = None
        self._flushed: list[Deferred[None]] = []  # waiting for the writes to end

    # -- Recorder (partypool.room.room) ------------------------------------------

    def record(self, event: Event) -> None:
        if not self.keep:
            return
        self._last_id += 1
        entry = Entry(self._last_id, self.clock.seconds(), event)
        self._recent.append(entry)
        self._unwritten.append(entry)
        if self._writing is None:
            self._write()

    def _write(self) -> None:
        batch, self._unwritten = self._unwritten, []
        d = defer.maybeDeferred(self.store.add_history, batch)
        d.addErrback(self._lost, len(batch))
        d.addBoth(self._written)
        if not d.called:
            self._writing = d

    def _lost(self, failure: Failure, count: int) -> None:
        log.failure("writing {count} history entries", failure, count=count)

    def _written(self, _: object) -> None:
        self._writing = None
        if self._unwritten:
            self._write()
            return
        waiting, self._flushed = self._flushed, []
        for d in waiting:
            d.callback(None)

    def flush(self) -> Deferred[None]:
        """Fires once everything recorded so far is written (or has failed)."""
        if self._writing is None:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._flushed.append(d)
        return d

    # -- reading --------------------------------------------------------------------

    def recent(self, count: int) -> list[Entry]:
        """Up to ``count`` of the latest entries not yet expired, oldest first."""
        cutoff = self.clock.seconds() - self.days * DAY
        latest: list[Entry] = []
        for entry in reversed(self._recent):
            if len(latest) >= count or entry.at < cutoff:
                break
            latest.append(entry)
        latest.reverse()
        return latest

    # -- forgetting -----------------------------------------------------------------

    def prune(self) -> Deferred[None]:
        """Forget what has expired, here and in the database; never fails
        (a `TimerService` would stop for good on a failure)."""
        cutoff = self.clock.seconds() - self.days * DAY
        while self._recent and self._recent[0].at < cutoff:
            self._recent.popleft()
        d = self.flush()
        d.addCallback(
            lambda _: self.store.prune_history(cutoff, self._last_id - self.keep + 1)
        )
        d.addCallback(self._pruned)
        d.addErrback(lambda f: log.failure("pruning the history", f))
        return d

    def _pruned(self, count: int) -> None:
        if count:
            log.info("history: {count} expired messages deleted", count=count)

    def clear(self) -> Deferred[int]:
        """Forget everything kept; fires with how many rows were deleted."""
        self._recent.clear()
        self._unwritten = []
        return self.flush().addCallback(lambda _: self.store.clear_history())


class HistoryService(TimerService):
    """Prunes the history every `PRUNE_EVERY` seconds (at start too), and
    lets the last write finish before the database closes."""

    def __init__(self, history: History, clock: IReactorTime) -> None:
        super().__init__(PRUNE_EVERY, history.prune)
        self.history = history
        self.clock = clock

    def stopService(self) -> Deferred[None]:  # noqa: N802
        d = super().stopService()
        return d.addCallback(lambda _: self.history.flush())

"""The room's memory for late joiners: the last messages said to everyone.

What is kept: each ``CHAT`` and each ``NOTICE`` to all, the last
``--history`` of them (0 keeps none), for at most ``--history-days`` days.
Private messages, joins and leaves are never kept.

The room never waits for the database.  `History.record` keeps the entry in
memory (the last N, which is all ``HISTORY`` ever reads) and writes it behind,
in order: at most one transaction every `WRITE_EVERY` seconds, holding
whatever was said since the last one.  (One transaction per message cost
about 0.7 ms of CPU each — a thread hand-off and a commit — more than
relaying the message to a small room; batched, a busy room pays that once a
second.)  A crash loses at most the last second's messages; a stop writes
them first.  The rows are loaded at start-up, so a
restart keeps them, and a `HistoryService` prunes expired ones on a timer
and, when the server stops, waits for the last write.

Every kept entry fits the replay line ``HISTORY <id> <time> <event line>``
within ``--max-line``: a live message is refused unless it does
(`partypool.wire.check_fits`), and one kept under a larger ``--max-line``
is cut to fit as it is loaded (`fitted`), so no door has to check again.
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
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool.room.room import Event
from partypool.wire import HISTORY_HEAD, format_line, split_to_fit

log = Logger(namespace="partypool.room.history")

DAY = 86400.0
DEFAULT_COUNT = 50  # HISTORY without a count
WRITE_EVERY = 1.0  # seconds between two writes of the history, at most one each
PRUNE_EVERY = 3600.0  # seconds between two prunings of expired rows
CUT = "\u2026"  # ends a text cut to fit a lowered --max-line


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


def fitted(entry: Entry, max_line: int) -> Entry:
    """``entry``, or, if its replay line would pass ``max_line`` bytes (it was
    kept under a larger ``--max-line``), a copy with its text cut between
    characters to fit, ending in ``…``.  Checked as a live message is, with
    the widest id; the database keeps the whole text, for a later start
    with a larger limit."""
    event = entry.event
    *head, text = (*HISTORY_HEAD, event.verb, *event.parts)
    if len(format_line(*head, text)) <= max_line:
        return entry
    room = max_line - len(CUT.encode("utf-8"))
    cut = split_to_fit(text, room, *head)[0] + CUT
    return attrs.evolve(entry, event=Event(event.verb, (*event.parts[:-1], cut)))


class HistoryStore(Protocol):
    """The database side (`partypool.room.store.Store`)."""

    def add_history(self, entries: list[Entry], first_kept: int) -> Deferred[None]: ...

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
        write_every: float = WRITE_EVERY,
    ) -> None:
        self.store = store
        self.clock = clock
        self.keep = keep
        self.days = days
        self._recent: collections.deque[Entry] = collections.deque(entries, keep)
        self._last_id = last_id
        self.write_every = write_every
        self._unwritten: list[Entry] = []
        self._next_write: IDelayedCall | None = None
        self._writing: Deferred[None] | None = None
        self._flushed: list[Deferred[None]] = []  # waiting for the writes to end

    # -- Recorder (partypool.room.room) ------------------------------------------

    def record(self, event: Event) -> None:
        if not self.keep:
            return
        self._last_id += 1
        # A fresh event: the one broadcast carries its encoded lines too.
        entry = Entry(
            self._last_id, self.clock.seconds(), Event(event.verb, event.parts)
        )
        self._recent.append(entry)
        self._unwritten.append(entry)
        self._schedule()

    def _schedule(self) -> None:
        if self._next_write is None and self._writing is None:
            self._next_write = self.clock.callLater(self.write_every, self._write)

    def _write(self) -> None:
        self._next_write = None
        batch, self._unwritten = self._unwritten, []
        if not batch:  # cleared meanwhile
            return
        first_kept = self._last_id - self.keep + 1
        d = defer.maybeDeferred(self.store.add_history, batch, first_kept)
        d.addErrback(self._lost, len(batch))
        d.addBoth(self._written)
        if not d.called:
            self._writing = d

    def _lost(self, failure: Failure, count: int) -> None:
        log.failure("writing {count} history entries", failure, count=count)

    def _written(self, _: object) -> None:
        self._writing = None
        if self._flushed and self._unwritten:  # someone waits: no pause
            self._write()
            return
        if self._unwritten:
            self._schedule()
            return
        waiting, self._flushed = self._flushed, []
        for d in waiting:
            d.callback(None)

    def flush(self) -> Deferred[None]:
        """Write what is waiting now; fires once everything recorded so far
        is written (or has failed)."""
        if self._next_write is not None:
            self._next_write.cancel()
            self._write()
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
        """Forget everything kept; fires with how many messages went (those
        in the database, and those not written yet)."""
        unwritten, self._unwritten = len(self._unwritten), []
        self._recent.clear()
        d = self.flush().addCallback(lambda _: self.store.clear_history())
        return d.addCallback(lambda deleted: deleted + unwritten)


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

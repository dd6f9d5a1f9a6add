"""Room events leave in rounds, so a busy room costs a write per member per round.

A room event goes to every member: with one write per member per event, a
room of 1,000 where 100 lines a second are said costs 100,000 socket writes a
second, and each write (a system call, a TLS record, the reactor's
bookkeeping) costs far more than the line it carries.  So a front door does
not write room events at once: it holds them on the connection and asks a
`Gatherer` for a round, and the round writes everything each connection holds
as one piece.

A round runs at the end of the reactor turn, so a quiet room's events leave
as soon as they would have anyway.  The only rule is a budget: after a round
that wrote to ``n`` connections, the next waits ``n / write_rate`` seconds
(at most ``max_hold``).  With the defaults (10,000 writes a second, 0.1 s) a
room of 20 at 100 lines a second never waits: a round of 19 writes uses
1.9 ms of budget, and its lines come 10 ms apart.  A room of 1,000 at 100
lines a second gets a round every 0.1 s, each write carrying about ten
lines: 10,000 writes a second instead of 100,000.  Replies to a connection's
own commands are not held.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger(namespace="partypool.room.gather")


class Holder(Protocol):
    """A connection that holds output until a round comes."""

    def write_held(self) -> bool:
        """Write whatever is held as one piece; False if nothing was."""


@attrs.define(eq=False)
class Gatherer:
    """Schedules the rounds for every connection (all front doors share one budget)."""

    clock: IReactorTime
    write_rate: float  # connection writes a second a steady stream of rounds may cost
    max_hold: float  # the longest an event waits for its round, in seconds
    rounds: int = 0  # for the admin's ``stats``
    writes: int = 0
    _waiting: list[Holder] = attrs.Factory(list)
    _round: IDelayedCall | None = None
    _next_round_at: float = float("-inf")

    def hold(self, holder: Holder) -> None:
        """``holder`` has just begun to hold output: have a round carry it."""
        self._waiting.append(holder)
        if self._round is None:
            wait = self._next_round_at - self.clock.seconds()
            # Clamped both ways: a wall clock stepped back must not stall the room.
            wait = min(self.max_hold, max(0.0, wait))
            self._round = self.clock.callLater(wait, self._write_round)

    def _write_round(self) -> None:
        waiting, self._waiting = self._waiting, []
        wrote = 0  # a holder whose reply already took its events is no write
        for holder in waiting:
            try:
                wrote += holder.write_held()
            except Exception:  # one broken connection must not hold up the rest
                log.failure("writing held output")
        self.rounds += 1
        self.writes += wrote
        pause = min(self.max_hold, wrote / self.write_rate)
        self._next_round_at = self.clock.seconds() + pause
        self._round = None
        if self._waiting:  # held during this round (a LEFT, say): the next one
            self._round = self.clock.callLater(pause, self._write_round)

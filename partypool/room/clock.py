"""Time for limits and timers: seconds that never run backwards.

Twisted's reactor reads the wall clock (``time.time``), for ``seconds()`` and
for deciding when a ``callLater`` is due.  When the system clock is stepped
(an operator or NTP fixing it), elapsed times computed from it jump: one
hour back and every token bucket, flood window and login throttle sees minus
an hour, and every pending timer (login timeout, keepalive, the shutdown
countdown) waits an hour longer.  Two defences, one per layer:

- `steady_reactor` puts the running reactor on the monotonic clock, anchored
  to the wall clock at the moment of the switch: its ``seconds()`` still reads
  like a date (as code that logs it expects), but steps of the system clock no
  longer move it, so timers fire on time.
- `SteadyClock` wraps whatever `IReactorTime` the core is given (the reactor,
  a test's ``task.Clock``) so that ``seconds()`` never decreases: a step back
  counts as (almost) no time passing.  Every limit in ``partypool.room`` reads time
  through one (`steady` converts), so none can see a negative elapsed time.

Wall-clock dates for people (a request's time, ``list-conn``) are not read
from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer


@implementer(IReactorTime)
class SteadyClock:
    """An `IReactorTime` whose ``seconds()`` never go back.

    Forward, it follows the wrapped clock; a step back is absorbed: the time
    between the last reading before the step and the first after it counts
    as none (readings come with every line and timer, so that is short), and
    from there it moves on with the wrapped clock.  Calls are scheduled on
    the wrapped clock, with their delays, which are relative.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.wrapped = clock
        self._last = self._now = clock.seconds()

    def seconds(self) -> float:
        raw = self.wrapped.seconds()
        if raw > self._last:
            self._now += raw - self._last
        self._last = raw
        return self._now

    def callLater(  # noqa: N802
        self, delay: float, callable: Callable[..., object], *args, **kw
    ) -> IDelayedCall:
        return self.wrapped.callLater(delay, callable, *args, **kw)

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:  # noqa: N802
        return self.wrapped.getDelayedCalls()


def steady(clock: IReactorTime) -> SteadyClock:
    """``clock`` as a `SteadyClock` (itself if it already is one)."""
    return clock if isinstance(clock, SteadyClock) else SteadyClock(clock)


def steady_reactor(
    reactor: IReactorTime,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``reactor``'s time on ``monotonic``, starting from ``wall`` now.

    The known workaround for Twisted's wall-clock reactor (twisted#2424):
    ``seconds()`` becomes the date at the switch plus monotonic time since,
    so calls already scheduled keep their due times.  Calling it again does
    nothing.
    """
    if getattr(reactor.seconds, "steady", False):
        return
    offset = wall() - monotonic()

    def seconds() -> float:
        return monotonic() + offset

    seconds.steady = True
    reactor.seconds = seconds
    for call in reactor.getDelayedCalls():  # their reset() and delay() read it
        call.seconds = seconds

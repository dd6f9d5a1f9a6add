"""Time that never runs backwards: the core's `SteadyClock` and the reactor's
switch to monotonic time (issue 12, item 10)."""

from __future__ import annotations

import time

from twisted.internet.selectreactor import SelectReactor
from twisted.internet.task import Clock

from partypool.room.clock import SteadyClock, steady, steady_reactor


def test_a_step_back_is_no_time_passing_and_a_step_forward_is_time():
    wall = Clock()
    wall.advance(1_700_000_000)
    clock = SteadyClock(wall)
    start = clock.seconds()
    wall.rightNow -= 3600  # an operator fixed the time
    assert clock.seconds() == start
    wall.advance(2)
    assert clock.seconds() == start + 2
    wall.rightNow += 7200
    assert clock.seconds() == start + 7202
    assert steady(clock) is clock  # wrapping twice changes nothing


def test_calls_are_scheduled_on_the_wrapped_clock():
    wall = Clock()
    clock = steady(wall)
    fired = []
    call = clock.callLater(5, fired.append, "due")
    assert clock.getDelayedCalls() == [call]
    wall.advance(5)
    assert fired == ["due"] and clock.getDelayedCalls() == []


class FakeTime:
    """The wall clock (starting now, as the reactor's) and a monotonic one."""

    def __init__(self) -> None:
        self.wall = time.time()
        self.monotonic = 50.0


def _reactor() -> SelectReactor:
    reactor = SelectReactor()
    reactor._internalReaders.clear()  # never run: no waker needed
    reactor.waker.connectionLost(None)
    return reactor


def test_the_reactor_keeps_time_through_a_wall_clock_step():
    """Timers are due by monotonic time once `steady_reactor` ran: a call
    scheduled before the switch and one after both fire on time although the
    wall clock went back an hour; ``seconds()`` still reads like a date."""
    reactor = _reactor()
    fake = FakeTime()
    before = reactor.callLater(10, lambda: None)
    steady_reactor(reactor, wall=lambda: fake.wall, monotonic=lambda: fake.monotonic)
    steady_reactor(reactor)  # a second call changes nothing
    assert abs(reactor.seconds() - fake.wall) < 1
    fired = []
    reactor.callLater(30, fired.append, "login timeout")
    fake.wall -= 3600
    fake.monotonic += 30
    reactor.runUntilCurrent()
    assert fired == ["login timeout"]
    assert before.called
    assert reactor.getDelayedCalls() == []

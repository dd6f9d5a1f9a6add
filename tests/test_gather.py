"""Room events leave in rounds (`partypool.gather`), driven by a fake clock."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from partypool.gather import Gatherer
from tests.helpers import connect, make_pool, unit_limits


@attrs.define(eq=False)
class Recorder:
    """A holder that notes when its rounds came."""

    clock: Clock
    rounds: list[float] = attrs.Factory(list)
    broken: bool = False

    def write_held(self) -> bool:
        self.rounds.append(self.clock.seconds())
        if self.broken:
            raise RuntimeError("socket gone")
        return True


def test_a_round_runs_at_the_end_of_the_turn():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=1000, max_hold=0.05)
    holders = [Recorder(clock) for _ in range(3)]
    for holder in holders:
        gatherer.hold(holder)
    assert [h.rounds for h in holders] == [[], [], []]  # not while the turn runs
    clock.advance(0)
    assert [h.rounds for h in holders] == [[0.0], [0.0], [0.0]]
    assert clock.getDelayedCalls() == []
    assert (gatherer.rounds, gatherer.writes) == (1, 3)


def test_after_a_round_of_n_writes_the_next_waits_n_over_the_rate():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=1000, max_hold=0.05)
    first = [Recorder(clock) for _ in range(20)]  # 20 writes: 20 ms of budget
    for holder in first:
        gatherer.hold(holder)
    clock.advance(0)
    late = Recorder(clock)
    gatherer.hold(late)
    clock.advance(0.019)
    assert late.rounds == []
    clock.advance(0.001)
    assert late.rounds == [pytest.approx(0.020)]
    clock.advance(1.0)  # the budget has long recovered: the next is immediate
    gatherer.hold(late)
    clock.advance(0)
    assert late.rounds[-1] == pytest.approx(1.020)


def test_the_wait_is_capped_at_max_hold():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=1000, max_hold=0.05)
    for holder in [Recorder(clock) for _ in range(500)]:  # 0.5 s of budget
        gatherer.hold(holder)
    clock.advance(0)
    late = Recorder(clock)
    gatherer.hold(late)
    clock.advance(0.05)
    assert late.rounds == [pytest.approx(0.05)]


@attrs.define(eq=False)
class HoldsAgain:
    """A holder whose write makes another connection hold (a LEFT, say)."""

    gatherer: Gatherer
    other: Recorder

    def write_held(self) -> bool:
        self.gatherer.hold(self.other)
        return False


def test_output_held_during_a_round_gets_the_next_one():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=100, max_hold=0.05)
    other = Recorder(clock)
    gatherer.hold(HoldsAgain(gatherer, other))
    clock.advance(0)
    assert other.rounds == []
    clock.advance(0.01)  # one write at 100 a second
    assert other.rounds == [pytest.approx(0.01)]


def test_a_broken_connection_does_not_stop_the_round(caplog):
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=1000, max_hold=0.05)
    broken, fine = Recorder(clock, broken=True), Recorder(clock)
    gatherer.hold(broken)
    gatherer.hold(fine)
    clock.advance(0)
    assert broken.rounds == fine.rounds == [0.0]
    gatherer.hold(fine)  # and the gatherer still works
    clock.advance(0.002)
    assert fine.rounds == [0.0, pytest.approx(0.002)]


class CountingTransport(StringTransport):
    """Counts writes: what gathering saves is writes, not bytes."""

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def chatting(pool, name: str, host: str):
    peer = connect(pool, host=host)
    peer.received()
    peer.join(name)
    return peer


def test_a_busy_room_writes_each_member_once_per_round():
    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(write_rate=100, max_hold=0.05))
    senders = [chatting(pool, f"s{i}", f"127.0.0.{i + 2}") for i in range(5)]
    reader = chatting(pool, "reader", "127.0.0.99")
    clock.pump([1, 1])  # the JOINED rounds are over, the budget recovered
    reader.received()
    counting = CountingTransport()
    reader.protocol.transport = counting
    for round_ in range(3):
        for i, sender in enumerate(senders):
            sender.send(f"SAY line {round_}.{i}")
            clock.advance(0.002)  # a reactor turn each: no two in one
    clock.advance(0.05)
    lines = counting.value().decode().split("\r\n")[:-1]
    assert lines == [f"CHAT s{i} line {r}.{i}" for r in range(3) for i in range(5)]
    # The first line went out at once and opened a 60 ms wait (6 writes at
    # 100 a second, capped at 50 ms); the 14 lines said meanwhile left together.
    assert counting.writes == 2
    assert pool.gatherer.writes >= 2


def test_a_reply_goes_at_once_after_what_the_room_said_first():
    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(write_rate=1, max_hold=10))
    alice = chatting(pool, "alice", "127.0.0.2")
    bob = chatting(pool, "bob", "127.0.0.3")  # alice's JOINED-bob round: 1 s wait
    alice.send("SAY hi")
    assert bob.transport.value() == b""  # held, not written
    bob.send("IP")
    assert bob.received() == ["CHAT alice hi", "IP 127.0.0.3"]
    writes = pool.gatherer.writes
    clock.advance(2)
    assert bob.received() == []  # the round found nothing left to write
    assert pool.gatherer.writes == writes  # and did not count one


def test_goodbye_writes_held_events_first_and_abort_drops_them():
    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(write_rate=1, max_hold=10))
    alice = chatting(pool, "alice", "127.0.0.2")
    bob = chatting(pool, "bob", "127.0.0.3")
    carol = chatting(pool, "carol", "127.0.0.4")
    clock.pump([10, 10])  # the JOINED rounds are over, the budget recovered
    bob.received()
    carol.received()
    alice.send("SAY last words")
    bob.protocol.session.disconnect("removed by admin")
    assert bob.transport.value().decode().split("\r\n")[:-1] == [
        "CHAT alice last words",
        "BYE removed by admin",
    ]
    carol.protocol.abort()
    clock.advance(20)
    assert carol.transport.value() == b""

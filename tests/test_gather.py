"""Room events leave in rounds (`partypool.room.gather`), driven by a fake clock."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from partypool.doors.outlet import HELD_MAX
from partypool.room.gather import Gatherer
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
        return True


def test_output_held_during_a_round_gets_the_next_one():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=100, max_hold=0.05)
    other = Recorder(clock)
    gatherer.hold(HoldsAgain(gatherer, other))
    clock.advance(0)
    assert other.rounds == []
    clock.advance(0.01)  # one write at 100 a second
    assert other.rounds == [pytest.approx(0.01)]


def test_a_broken_connection_does_not_stop_the_round():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=1000, max_hold=0.05)
    broken, fine = Recorder(clock, broken=True), Recorder(clock)
    gatherer.hold(broken)
    gatherer.hold(fine)
    with capturedLogs() as events:
        clock.advance(0)
    assert broken.rounds == fine.rounds == [0.0]
    [failure] = [e for e in events if "log_failure" in e]
    assert failure["log_failure"].check(RuntimeError)
    gatherer.hold(fine)  # and the gatherer still works
    clock.advance(0.002)
    assert fine.rounds == [0.0, pytest.approx(0.002)]


@attrs.define(eq=False)
class Emptied:
    """A holder whose events a reply already took: the round writes nothing."""

    def write_held(self) -> bool:
        return False


def test_only_real_writes_count_against_the_budget():
    clock = Clock()
    gatherer = Gatherer(clock, write_rate=10, max_hold=1.0)
    for _ in range(5):
        gatherer.hold(Emptied())
    clock.advance(0)
    late = Recorder(clock)
    gatherer.hold(late)
    clock.advance(0)
    assert late.rounds == [0.0]  # no wait: nothing was written
    assert (gatherer.rounds, gatherer.writes) == (2, 1)


def test_a_wall_clock_stepped_back_does_not_stall_the_room():
    clock = Clock()
    clock.advance(5000)
    gatherer = Gatherer(clock, write_rate=1, max_hold=0.1)
    gatherer.hold(Recorder(clock))
    clock.advance(0)
    clock.rightNow -= 3600  # an operator fixed the time
    late = Recorder(clock)
    gatherer.hold(late)
    clock.advance(0.1)
    assert late.rounds == [pytest.approx(1400.1)]


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
    rounds, writes = pool.gatherer.rounds, pool.gatherer.writes
    for round_ in range(3):
        for i, sender in enumerate(senders):
            sender.send(f"SAY line {round_}.{i}")
            clock.advance(0.002)  # a reactor turn each: no two in one
    clock.advance(0.05)
    lines = counting.value().decode().split("\r\n")[:-1]
    assert lines == [f"CHAT s{i} line {r}.{i}" for r in range(3) for i in range(5)]
    # The first line went out at once to the 5 others and opened a 50 ms wait
    # (5 writes at 100 a second); the 14 lines said meanwhile left together.
    assert counting.writes == 2
    assert pool.gatherer.rounds - rounds == 2
    assert pool.gatherer.writes - writes == 5 + 6  # the second round: everyone


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


def test_close_writes_what_is_held_and_a_lost_connection_forgets_it():
    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(write_rate=1, max_hold=10))
    peer = chatting(pool, "alice", "127.0.0.2")
    peer.protocol.gather(b"NOTICE held\r\n")
    peer.protocol.close()
    assert peer.transport.value() == b"NOTICE held\r\n"
    gone = chatting(pool, "bob", "127.0.0.3")
    gone.protocol.gather(b"NOTICE never\r\n")
    gone.lose()
    assert gone.protocol.write_held() is False
    assert gone.transport.value() == b""


def test_a_slow_reader_holding_too_much_is_dropped_without_waiting_for_a_round():
    clock = Clock()
    limits = unit_limits(
        write_rate=1, max_hold=10, max_pending=10_000, rate=1000, burst=1000
    )
    pool = make_pool(clock, limits=limits)
    senders = [chatting(pool, f"s{i}", f"127.0.0.{i + 2}") for i in range(4)]
    slow = chatting(pool, "slow", "127.0.0.99")
    clock.pump([10, 10])  # the JOINED rounds are over
    slow.received()
    senders[0].send("SAY opens a ten-second wait")
    clock.advance(0)
    slow.transport.clear()
    slow.transport.producer.pauseProducing()  # the kernel buffer is full
    line = "x" * 1900
    for i in range(HELD_MAX // 1900 + 1):
        senders[i % 4].send(f"SAY {line}")
    assert slow.protocol.session.state == "closed"  # before any round came
    assert slow.transport.value() == b""
    clock.advance(10)
    assert "LEFT slow too slow" in senders[0].received()

"""Session rules every door shares (issue 12, items 2, 3, 10 and 11): the
door-neutral `Session` on a `task.Clock`, through a door that records what
the session says as objects.

- 11: however a session ends, it says nothing after its goodbye, and no
  timer of it outlives it.
- 10: a clock stepped back (or forward) locks nobody out of any limit.
- 3: every per-address rule counts an IPv6 /64; failed logins from all
  addresses share a budget.
- 2: connections not logged in yet are bounded per address and in all.
"""

from __future__ import annotations

import pytest
import scramp
from twisted.internet.task import Clock
from twisted.logger import Logger

from partypool.admin.commands import AdminCommands, Operator
from partypool.doors.v1 import V1Dialect
from partypool.room.pool import MAKE_ROOM
from partypool.room.session import Session
from partypool.wire import WireError
from tests.helpers import PASSKEY, make_pool, unit_limits
from tests.test_session import FakeOutlet

log = Logger(namespace="tests.session_rules")


class Door:
    """Records what the session says, in order, and how it was closed."""

    def __init__(self) -> None:
        self.said: list[tuple] = []

    def deliver(self, event) -> None:
        self.said.append(("event", event.verb))

    def error(self, error: WireError) -> None:
        self.said.append(("error", error.code))

    def ping(self, token: str) -> None:
        self.said.append(("ping",))

    def goodbye(self, reason: str, error: WireError | None) -> None:
        self.said.append(("goodbye", reason))

    def close(self) -> None:
        self.said.append(("close",))

    def abort(self) -> None:
        self.said.append(("abort",))


def start(pool, host: str, handshaking: bool = False) -> tuple[Session, Door]:
    door = Door()
    session = Session(
        pool,
        host,
        f"{host}:1",
        door,
        handshaking=handshaking,
        log=log,
        door_name="test door",
    )
    session.start()
    return session, door


def v1(pool, host: str) -> tuple[V1Dialect, FakeOutlet]:
    """The v1 dialect over a fake outlet, started (HELLO written)."""
    outlet = FakeOutlet()
    dialect = V1Dialect(pool, host, f"{host}:1", outlet, handshaking=False, log=log)
    dialect.start()
    return dialect, outlet


def log_in(session: Session, passkey: str = PASSKEY) -> bool:
    """SCRAM by calls; whether the server accepted the proof."""
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", passkey)
    first = session.scram_first(client.get_client_first())
    if first is None:
        return False
    client.set_server_first(first)
    return session.scram_final(client.get_client_final()) is not None


def named(pool, host: str, name: str) -> tuple[Session, Door]:
    session, door = start(pool, host)
    assert log_in(session)
    assert session.join(name) == name
    return session, door


# -- 11: the goodbye is the last thing said -------------------------------------


def _timeout_at_login(pool, clock):
    session, door = start(pool, "192.0.2.1")
    clock.advance(pool.limits.login_timeout)  # the keepalive is due too
    return session, door


def _timeout_at_keepalive(pool, clock):
    session, door = named(pool, "192.0.2.1", "silent")
    clock.advance(pool.limits.idle_ping)
    clock.advance(pool.limits.idle_ping)
    return session, door


def _kick(pool, clock):
    session, door = named(pool, "192.0.2.1", "kicked")
    pool.room.remove(session, "removed by admin")
    return session, door


def _flood(pool, clock):
    session, door = named(pool, "192.0.2.1", "flooder")
    while not session.closed:
        session.admit_line()
    return session, door


def _quit(pool, clock):
    session, door = named(pool, "192.0.2.1", "leaver")
    session.quit("bye")
    return session, door


def _shutdown(pool, clock):
    session, door = start(pool, "192.0.2.1")
    pool.schedule_shutdown(0, "maintenance")
    return session, door


def _countdown(pool, clock):
    session, door = named(pool, "192.0.2.1", "waiting")
    pool.schedule_shutdown(3, "maintenance")
    clock.pump([1, 1, 1])
    return session, door


def _slow_reader(pool, clock):
    session, door = named(pool, "192.0.2.1", "slow")
    session.too_slow()
    return session, door


def _wrong_passkey(pool, clock):
    session, door = start(pool, "192.0.2.1")
    assert not log_in(session, "wrong")
    return session, door


def _refused(pool, clock):
    pool.room.banned_hosts.add("192.0.2.0/24")
    return start(pool, "192.0.2.1")


def _made_room_for(pool, clock):
    session, door = start(pool, "192.0.2.1")
    for i in range(pool.limits.max_unauthenticated):
        start(pool, f"198.51.100.{i + 1}")
    return session, door


def _handshake_never_ends(pool, clock):
    session, door = start(pool, "192.0.2.1", handshaking=True)
    clock.advance(pool.limits.login_timeout)
    return session, door


ENDINGS = {
    "login timeout": _timeout_at_login,
    "keepalive timeout": _timeout_at_keepalive,
    "kick": _kick,
    "flood": _flood,
    "quit": _quit,
    "shutdown": _shutdown,
    "countdown": _countdown,
    "slow reader": _slow_reader,
    "wrong passkey": _wrong_passkey,
    "refused at connect": _refused,
    "making room": _made_room_for,
    "handshake never ends": _handshake_never_ends,
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_nothing_is_said_after_the_goodbye_and_no_timer_outlives_it(ending):
    """With the login timeout, the keepalive and the rate limit all short
    (the issue's ``--login-timeout 2 --idle-ping 2``), however the session
    ends: the goodbye (or the abort) is the last thing the door hears, only
    the close backstop is still scheduled, and once the connection is gone
    nothing is."""
    clock = Clock()
    limits = unit_limits(login_timeout=2, idle_ping=2, rate=1, burst=2)
    pool = make_pool(clock, limits=limits, max_clients=5)
    session, door = ENDINGS[ending](pool, clock)
    assert session.closed
    said = list(door.said)
    assert said[-1] in (("close",), ("abort",)), said
    assert said[-1] == ("abort",) or said[-2][0] == "goodbye", said
    for _ in range(5):  # every timer, and again
        clock.advance(2)
    assert door.said[len(said) :] in ([], [("abort",)]), door.said  # the backstop
    session.lost()
    ours = [c for c in clock.getDelayedCalls() if c.func.__self__ in (session, door)]
    assert ours == []


def test_login_and_keepalive_timing_out_together_end_on_bye_in_v1():
    """The issue's report, at the v1 dialect: ``ERR timeout``, ``BYE
    timeout`` and then nothing (it was followed by ``PING``)."""
    from partypool.doors.v1 import V1Dialect
    from tests.test_session import FakeOutlet

    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(login_timeout=2, idle_ping=2))
    outlet = FakeOutlet()
    V1Dialect(
        pool, "192.0.2.1", "192.0.2.1:1", outlet, handshaking=False, log=log
    ).start()
    clock.pump([1, 1, 1, 2, 2])
    assert outlet.lines()[1:] == ["ERR timeout login took too long", "BYE timeout"]


# -- 10: a clock stepped back or forward --------------------------------------


def test_a_clock_stepped_back_does_not_rate_limit_a_steady_sender():
    """The issue's report: an hour back, a user sending one line every 1.2 s
    got ``ERR rate-limited`` for every line.  Now every line passes."""
    clock = Clock()
    clock.advance(1_700_000_000)
    pool = make_pool(clock, limits=unit_limits(rate=1, burst=2))
    session, door = named(pool, "192.0.2.1", "steady")
    clock.rightNow -= 3600  # an operator fixed the time
    passed = []
    for _ in range(20):
        clock.advance(1.2)
        passed.append(session.admit_line())
    assert all(passed) and ("error", "rate-limited") not in door.said
    clock.rightNow += 7200  # and forward: the bucket holds no more than a burst
    assert [session.admit_line() for _ in range(3)] == [True, True, False]


def test_a_clock_stepped_back_neither_hides_rate_errors_nor_floods_early():
    """Drops from before the step still leave the flood window, and the
    one-a-second ``ERR rate-limited`` still comes."""
    clock = Clock()
    clock.advance(1_700_000_000)
    limits = unit_limits(rate=1, burst=1, flood_drops=6, flood_window=10)
    pool = make_pool(clock, limits=limits)
    session, door = named(pool, "192.0.2.1", "eager")
    for _ in range(5):  # one passes, four dropped
        session.admit_line()
    clock.rightNow -= 3600
    clock.advance(1)
    session.admit_line()  # dropped: the time between reads across a step is lost
    clock.advance(11)  # the five drops are more than a window old
    door.said.clear()
    for _ in range(5):  # one passes, four dropped: nine in all, not in a window
        session.admit_line()
    assert not session.closed
    assert door.said == [("error", "rate-limited")]


def test_a_clock_stepped_back_does_not_stretch_a_mute_or_make_uptime_negative():
    clock = Clock()
    clock.advance(1_700_000_000)
    pool = make_pool(clock)
    session, door = named(pool, "2001:db8::1", "loud")
    pool.mutes.mute("loud", frozenset({session.host}), 60)
    clock.rightNow -= 3600
    with pytest.raises(WireError, match="muted for another 60 s"):
        session.say("hello")
    listed = []
    AdminCommands(pool, Operator("password", "127.0.0.1:1")).run("mutes").addCallback(
        listed.append
    )
    assert listed[0].output == "loud  2001:db8::/64  00:01:00 left"
    clock.advance(61)
    session.say("hello again")
    results = []
    AdminCommands(pool, Operator("password", "127.0.0.1:1")).run("stats").addCallback(
        results.append
    )
    assert "uptime     00:01:01" in results[0].output


# -- 3: address groups and the failure budget -----------------------------------


def test_every_per_address_rule_counts_an_ipv6_64():
    """Logins in progress, one session per address, bans and mutes: a /64
    is one address, the next /64 another."""
    pool = make_pool(limits=unit_limits(max_pending_logins=3))
    for i in range(3):
        start(pool, f"2001:db8::{i + 1}")
    _, door = start(pool, "2001:db8::ffff:1")
    assert door.said[0] == ("goodbye", "auth-throttled")
    _, door = start(pool, "2001:db8:0:1::1")
    assert door.said == []

    pool = make_pool()
    named(pool, "2001:db8::1", "first")
    session, door = start(pool, "2001:db8::2")
    assert door.said[0] == ("goodbye", "duplicate-ip")
    pool.room.banned_hosts.add("2001:db8:0:2::/64")
    _, door = start(pool, "2001:db8:0:2::abcd")
    assert door.said[0] == ("goodbye", "banned")

    other, _ = named(pool, "2001:db8:0:3::1", "other")
    pool.mutes.mute("someone", frozenset({"2001:db8:0:3::99"}), None)
    with pytest.raises(WireError, match="muted"):
        other.say("from the muted /64")


def test_a_hundred_addresses_guessing_five_times_are_not_all_checked():
    """100 addresses × 5 wrong passkeys: the budget of all addresses
    (``--login-budget``, 20) is checked, the rest refused unchecked; an
    address that logged in lately still gets in, a new one waits."""
    clock = Clock()
    pool = make_pool(clock)
    trusted, _ = named(pool, "203.0.113.7", "regular")
    trusted.quit()
    answers = []
    for _ in range(5):
        for i in range(100):
            session, door = start(pool, f"198.51.100.{i + 1}")
            log_in(session, f"guess {i}")
            answers.append(door.said[0][1])
            session.lost()
    assert answers.count("auth-failed") == 20
    assert answers.count("auth-throttled") == 480
    newcomer, door = start(pool, "192.0.2.99")
    assert not log_in(newcomer)
    assert door.said[0] == ("goodbye", "auth-throttled")
    returning, _ = start(pool, "203.0.113.7")
    assert log_in(returning)


def test_the_budget_pause_is_named_in_the_refusal():
    from partypool.doors.v1 import V1Dialect
    from tests.test_session import FakeOutlet

    pool = make_pool(limits=unit_limits(login_budget=1))
    session, _ = start(pool, "198.51.100.1")
    log_in(session, "wrong")
    outlet = FakeOutlet()
    dialect = V1Dialect(
        pool, "192.0.2.1", "192.0.2.1:1", outlet, handshaking=False, log=log
    )
    dialect.start()
    dialect.line(b"AUTH SCRAM-SHA-256 biwsbj1jaGF0LHI9YWJj")
    assert outlet.lines()[1:] == [
        "ERR auth-throttled too many failed logins on this server; try again in 1 s",
        "BYE auth-throttled",
    ]


# -- 2: connections not logged in yet -----------------------------------------


def test_a_full_port_makes_room_by_closing_the_biggest_groups_oldest():
    """At --max-unauthenticated a newcomer gets in: the oldest connection of
    the address holding the most is told ``BYE too many connections not logged in``
    (or, mid-handshake, closed); a session that logged in is not counted."""
    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(max_unauthenticated=4))
    named(pool, "192.0.2.50", "settled")
    crowd = [start(pool, "198.51.100.1", handshaking=True) for _ in range(2)]
    crowd += [start(pool, "198.51.100.1") for _ in range(1)]
    alone = start(pool, "203.0.113.1")
    newcomer, door = start(pool, "192.0.2.1")
    assert door.said == [] and not newcomer.closed
    assert crowd[0][1].said == [("abort",)]  # mid-handshake: nothing to say
    start(pool, "192.0.2.2")
    assert crowd[1][1].said == [("abort",)]
    start(pool, "192.0.2.3")
    assert crowd[2][1].said[:2] == [("goodbye", MAKE_ROOM), ("close",)]
    assert alone[1].said == [] and len(pool.unauthenticated) == 4
    assert len(pool.room) == 1

"""Secrets as kept by the server, and the login throttle."""

import base64

import pytest
import scramp
from twisted.internet.task import Clock

from partypool.room.auth import AuthFailed, ChatVerifier, LoginThrottle, RootPassword


def test_verifier_never_shows_the_passkey():
    verifier = ChatVerifier.from_passkey("hunter2-secret", 4096)
    assert "hunter2" not in repr(verifier)
    assert b"hunter2" not in verifier.stored_key + verifier.server_key + verifier.salt


def test_scram_exchange_accepts_right_passkey_and_proves_server():
    verifier = ChatVerifier.from_passkey("right", 4096)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", "right")
    exchange = verifier.exchange()
    client.set_server_first(exchange.first(client.get_client_first()))
    client.set_server_final(
        exchange.final(client.get_client_final())
    )  # raises if forged


def test_scram_exchange_rejects_wrong_passkey_and_user():
    verifier = ChatVerifier.from_passkey("right", 4096)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", "wrong")
    exchange = verifier.exchange()
    client.set_server_first(exchange.first(client.get_client_first()))
    with pytest.raises(AuthFailed):
        exchange.final(client.get_client_final())
    other = scramp.ScramClient(["SCRAM-SHA-256"], "root", "right")
    with pytest.raises(AuthFailed):
        verifier.exchange().first(other.get_client_first())
    with pytest.raises(AuthFailed):
        verifier.exchange().first(base64.b64encode(b"junk").decode())


def test_root_password_hash_verifies_and_hides():
    root = RootPassword.from_password("toor but longer", 4096)
    assert root.verify("toor but longer")
    assert not root.verify("toor")
    assert "toor" not in repr(root)
    assert RootPassword.from_password("toor but longer", 4096).salt != root.salt


def test_throttle_refuses_after_five_failures_for_a_minute():
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(4):
        throttle.failed("127.0.0.2")
    assert not throttle.is_refused("127.0.0.2")
    throttle.failed("127.0.0.2")
    assert throttle.is_refused("127.0.0.2")
    assert not throttle.is_refused("127.0.0.3")
    clock.advance(59)
    assert throttle.is_refused("127.0.0.2")
    clock.advance(2)
    assert not throttle.is_refused("127.0.0.2")


def test_throttle_window_slides():
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(4):
        throttle.failed("127.0.0.2")
        clock.advance(20)  # failures spread over more than a minute
    throttle.failed("127.0.0.2")
    assert not throttle.is_refused("127.0.0.2")


def test_throttle_tables_stay_bounded():
    clock = Clock()
    throttle = LoginThrottle(clock, max_tracked=100)
    for i in range(1000):
        for _ in range(5 if i % 2 else 1):
            throttle.failed(f"127.{i // 256}.{i % 256}.1")
        clock.advance(1)
    assert len(throttle._failures) <= 100
    assert len(throttle._refused_until) <= 100
    assert throttle.is_refused("127.3.231.1")  # the newest refusal survives


def test_throttle_counts_an_ipv6_64_as_one_address():
    """Five guesses from five addresses of one /64 refuse the whole /64;
    the next /64 may still try."""
    throttle = LoginThrottle(Clock())
    for i in range(5):
        throttle.failed(f"2001:db8::{i + 1:x}")
    assert throttle.is_refused("2001:db8::99")
    assert throttle.recent_failures("2001:db8::abcd") == 0  # counted, then refused
    assert not throttle.is_refused("2001:db8:0:1::1")
    for i in range(5):  # IPv4 neighbours stay apart
        throttle.failed(f"192.0.2.{i + 1}")
    assert not throttle.is_refused("192.0.2.1")


def test_a_clock_stepped_back_does_not_stretch_a_refusal():
    """An hour back, the minute's refusal still ends a minute later, and
    failures of "the future" still leave the window."""
    clock = Clock()
    clock.advance(1_700_000_000)
    throttle = LoginThrottle(clock)
    for _ in range(5):
        throttle.failed("192.0.2.1")
    for _ in range(4):
        throttle.failed("192.0.2.2")
    clock.rightNow -= 3600  # an operator fixed the time
    assert throttle.is_refused("192.0.2.1")
    clock.advance(61)
    assert not throttle.is_refused("192.0.2.1")
    assert throttle.recent_failures("192.0.2.2") == 0
    throttle.failed("192.0.2.2")
    assert not throttle.is_refused("192.0.2.2")
    clock.rightNow += 7200  # and forward again: time passed, refusals end
    for _ in range(5):
        throttle.failed("192.0.2.3")
    clock.rightNow += 7200
    assert not throttle.is_refused("192.0.2.3")


def _guess(throttle: LoginThrottle, hosts: list[str], tries: int) -> int:
    """Each host guesses ``tries`` times; return how many guesses were checked."""
    checked = 0
    for _ in range(tries):
        for host in hosts:
            if not throttle.is_refused(host):
                checked += 1
                throttle.failed(host)
    return checked


def test_a_hundred_addresses_get_the_server_wide_budget_not_five_each():
    """100 addresses × 5 guesses: 50 are checked, then every login pauses,
    first 5 s, doubling while the budget stays spent, at most the penalty;
    after a quiet window the pause starts small again."""
    clock = Clock()
    throttle = LoginThrottle(clock)
    hosts = [f"198.51.100.{i}" for i in range(1, 101)]
    assert _guess(throttle, hosts, 5) == 50
    assert throttle.refused_for("203.0.113.1") == 5  # a newcomer waits too
    pauses = []
    for _ in range(3):
        clock.advance(throttle.refused_for("203.0.113.1"))
        assert _guess(throttle, hosts[-1:], 1) == 1  # one more: paused again
        pauses.append(throttle.refused_for("203.0.113.1"))
    assert pauses == [10, 20, 40]
    clock.advance(40)  # 75 s in: only the failure at 35 s is in the window
    assert _guess(throttle, hosts, 5) == 49
    assert throttle.refused_for("203.0.113.1") == 60  # 80, capped
    clock.advance(60 + 61)  # the pause ends, then a quiet window
    assert _guess(throttle, hosts, 1) == 50
    assert throttle.refused_for("203.0.113.1") == 5


def test_addresses_that_logged_in_get_through_a_pause():
    """A group that logged in within a day is not held by the server-wide
    pause (its own failures still count); others are."""
    clock = Clock()
    throttle = LoginThrottle(clock, max_total=10)
    throttle.succeeded("2001:db8::1")
    _guess(throttle, [f"198.51.100.{i}" for i in range(10)], 1)
    assert throttle.is_refused("203.0.113.1")
    assert not throttle.is_refused("2001:db8::2")  # same /64
    clock.advance(24 * 3600)
    _guess(throttle, [f"198.51.100.{i}" for i in range(10)], 1)
    assert throttle.is_refused("2001:db8::2")  # trust runs out

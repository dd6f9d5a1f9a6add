"""Secrets as kept by the server, the login throttle and the failure budget."""

import base64

import pytest
import scramp
from twisted.internet.task import Clock

from partypool.room.auth import (
    AuthFailed,
    ChatVerifier,
    FailureBudget,
    LoginThrottle,
    RootPassword,
)


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


def test_a_login_trusts_its_group_for_a_day():
    """`trusted` (what lets a group through a pause of the failure budget)
    covers the /64 that logged in, for 24 hours."""
    clock = Clock()
    throttle = LoginThrottle(clock)
    throttle.succeeded("2001:db8::1")
    assert throttle.trusted("2001:db8::2")
    assert not throttle.trusted("2001:db8:0:1::1")
    assert not throttle.trusted("192.0.2.1")
    clock.advance(24 * 3600)
    assert not throttle.trusted("2001:db8::2")


BINDING = b"\x01" * 32  # the tls-server-end-point data of "our" certificate


def plus_client(passkey: str, binding: bytes) -> scramp.ScramClient:
    return scramp.ScramClient(
        ["SCRAM-SHA-256-PLUS"],
        "chat",
        passkey,
        channel_binding=("tls-server-end-point", binding),
    )


def test_plus_login_with_the_same_binding():
    """Issue 13.1: SCRAM-SHA-256-PLUS bound to the certificate both ends saw
    logs in, and the server still proves itself."""
    verifier = ChatVerifier.from_passkey("right", 4096)
    client = plus_client("right", BINDING)
    exchange = verifier.exchange("SCRAM-SHA-256-PLUS", BINDING)
    client.set_server_first(exchange.first(client.get_client_first()))
    client.set_server_final(exchange.final(client.get_client_final()))


def test_plus_login_through_a_relay_fails():
    """A relay with its own certificate: the client binds to the relay's,
    the server to its own; the right passkey does not help."""
    verifier = ChatVerifier.from_passkey("right", 4096)
    client = plus_client("right", b"\x02" * 32)
    exchange = verifier.exchange("SCRAM-SHA-256-PLUS", BINDING)
    client.set_server_first(exchange.first(client.get_client_first()))
    with pytest.raises(AuthFailed):
        exchange.final(client.get_client_final())


def test_mechanisms_and_bindings_that_cannot_log_in():
    """PLUS over plain TCP, an unknown mechanism, and over TLS a client
    that claims it could bind but thinks the server cannot ("y")."""
    verifier = ChatVerifier.from_passkey("right", 4096)
    first = plus_client("right", BINDING).get_client_first()
    with pytest.raises(AuthFailed, match="needs TLS"):
        verifier.exchange("SCRAM-SHA-256-PLUS", None).first(first)
    with pytest.raises(AuthFailed, match="unsupported"):
        verifier.exchange("SCRAM-SHA-1", BINDING).first(first)
    downgraded = (
        "y"
        + scramp.ScramClient(["SCRAM-SHA-256"], "chat", "right").get_client_first()[1:]
    )
    with pytest.raises(AuthFailed):
        verifier.exchange("SCRAM-SHA-256", BINDING).first(downgraded)


def test_plain_scram_over_tls_still_works():
    """Third-party and browser clients cannot bind: SCRAM-SHA-256 with "n"
    stays accepted on a TLS connection."""
    verifier = ChatVerifier.from_passkey("right", 4096)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", "right")
    exchange = verifier.exchange("SCRAM-SHA-256", BINDING)
    client.set_server_first(exchange.first(client.get_client_first()))
    client.set_server_final(exchange.final(client.get_client_final()))


def test_a_verifier_tells_whether_a_secret_is_its_own():
    verifier = ChatVerifier.from_passkey("right", 4096)
    assert verifier.matches("right")
    assert not verifier.matches("wrong") and not verifier.matches("right ")


def test_a_login_forgets_the_address_failures():
    """A client offering several keys fails with the first ones each time."""
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(3):
        for _ in range(4):
            throttle.failed("127.0.0.2")
        throttle.succeeded("127.0.0.2")
    assert throttle.recent_failures("127.0.0.2") == 0
    assert not throttle.is_refused("127.0.0.2")


def test_budget_pauses_once_spent_and_doubles_while_over():
    """20 failures in ten minutes, from anywhere: a 1 s pause, then 2, 4 … 60."""
    clock = Clock()
    budget = FailureBudget(clock, limit=20, window=600, max_backoff=60)
    for _ in range(19):
        budget.failed()
    assert budget.paused() == 0
    budget.failed()
    assert budget.paused() == 1
    pauses = []
    for _ in range(8):
        clock.advance(budget.paused())
        assert budget.paused() == 0
        budget.failed()
        pauses.append(budget.paused())
    assert pauses == [2, 4, 8, 16, 32, 60, 60, 60]


def test_budget_refills_as_the_window_slides():
    clock = Clock()
    budget = FailureBudget(clock, limit=3, window=10, max_backoff=60)
    for _ in range(3):
        budget.failed()
    assert budget.paused() == 1
    clock.advance(11)
    budget.failed()
    assert budget.paused() == 0 and budget.backoff == 0
    budget.failed()
    budget.failed()
    assert budget.paused() == 1  # over again: the pause starts over at 1 s


def test_budget_pause_survives_no_clock_step():
    """Stepping the clock back an hour must not make a pause last an hour."""
    clock = Clock()
    clock.advance(10_000)
    budget = FailureBudget(clock, limit=2, window=60, max_backoff=60)
    budget.failed()
    budget.failed()
    clock.rightNow -= 3600
    assert budget.paused() == 1

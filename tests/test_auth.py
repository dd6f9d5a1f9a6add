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


def test_a_verifier_tells_whether_a_secret_is_its_own():
    verifier = ChatVerifier.from_passkey("right", 4096)
    assert verifier.matches("right")
    assert not verifier.matches("wrong") and not verifier.matches("right ")

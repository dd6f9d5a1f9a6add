"""The chat port's TLS layer: certificate made once, kept, checked, reloadable;
small writes flushed together once per reactor turn."""

import subprocess

import pytest
from OpenSSL import SSL
from twisted.internet.task import Clock

from partypool.tls import (
    ConfigError,
    OneTurnCalls,
    ServerTLS,
    certificate_fingerprint,
    check_private,
    ensure_self_signed,
)


def test_self_signed_is_made_once_with_a_private_key(tmp_path):
    cert, key = ensure_self_signed(tmp_path / "tls")
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    first = ServerTLS(cert, key).fingerprint
    again = ensure_self_signed(tmp_path / "tls")
    assert again == (cert, key)
    assert ServerTLS(*again).fingerprint == first


def test_fingerprint_matches_openssl(tmp_path):
    cert, _ = ensure_self_signed(tmp_path)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().split("=", 1)[1] == certificate_fingerprint(cert.read_bytes())


def test_key_readable_by_others_is_refused_with_the_fix(tmp_path):
    cert, key = ensure_self_signed(tmp_path)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {key}"):
        ServerTLS(cert, key)
    with pytest.raises(ConfigError):
        check_private(key)


def test_unusable_certificate_is_a_config_error(tmp_path):
    cert, key = ensure_self_signed(tmp_path)
    cert.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot use TLS certificate"):
        ServerTLS(cert, key)


def test_reload_switches_new_connections_to_the_new_certificate(tmp_path):
    old_cert, old_key = ensure_self_signed(tmp_path / "old")
    new_cert, new_key = ensure_self_signed(tmp_path / "new")
    tls = ServerTLS(old_cert, old_key)
    before = tls.serverConnectionForTLS(None)
    old_cert.write_bytes(new_cert.read_bytes())
    old_key.write_bytes(new_key.read_bytes())
    assert tls.reload() == certificate_fingerprint(new_cert.read_bytes())
    after = tls.serverConnectionForTLS(None)
    assert isinstance(after, SSL.Connection)
    assert before.get_context() is not after.get_context()


def test_one_turn_calls_share_one_reactor_timer():
    """The TLS layer's per-connection flushes run from a single reactor call
    on the next turn; a cancelled one is skipped; real delays pass through."""
    clock = Clock()
    calls = OneTurnCalls(clock)
    ran: list[str] = []
    calls.callLater(0, lambda: ran.append("a"))
    cancelled = calls.callLater(0, lambda: ran.append("b"))
    calls.callLater(0, lambda: ran.append("c"))
    cancelled.cancel()
    later = calls.callLater(5, ran.append, "later")
    assert len(clock.getDelayedCalls()) == 2  # one shared turn, one real delay
    clock.advance(0)
    assert ran == ["a", "c"] and not cancelled.active()
    clock.advance(5)
    assert ran == ["a", "c", "later"] and not later.active()


def test_half_a_self_signed_pair_is_refused_not_overwritten(tmp_path):
    cert, key = ensure_self_signed(tmp_path)
    cert.unlink()
    with pytest.raises(ConfigError, match="without its pair"):
        ensure_self_signed(tmp_path)
    assert key.exists()

"""Certificate pinning and trust on first use (the known-servers file)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL.crypto import X509

from partypool.client.connect import ServerAddress, certificate_fingerprint
from partypool.client.known_servers import (
    ENV_VAR,
    FingerprintChanged,
    KnownServers,
    default_path,
    same_fingerprint,
)
from partypool.tls import ensure_self_signed


def make_certificate() -> X509:
    """A new self-signed certificate, made as the server makes its own."""
    with tempfile.TemporaryDirectory() as directory:
        cert_path, _ = ensure_self_signed(Path(directory) / "tls")
        return X509.from_cryptography(
            x509.load_pem_x509_certificate(cert_path.read_bytes())
        )


@pytest.fixture
def known(tmp_path: Path) -> KnownServers:
    return KnownServers(tmp_path / "config" / "known_servers")


def test_fingerprint_format() -> None:
    """SHA-256 of the DER certificate, colon-separated upper-case hex."""
    certificate = make_certificate()
    der = certificate.to_cryptography().public_bytes(serialization.Encoding.DER)
    expected = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert certificate_fingerprint(certificate) == expected
    assert same_fingerprint(expected, expected.replace(":", "").lower())
    assert not same_fingerprint(expected, "AB:CD")


def test_first_use_is_remembered(known: KnownServers) -> None:
    """An unknown server passes the check and is stored after login; the
    same certificate passes again next time."""
    certificate = make_certificate()
    address = ServerAddress("Chat.Example", 12345, known=known)
    address.check_certificate(certificate)
    assert known.lookup("chat.example", 12345) is None
    assert not address.trusted
    assert address.remember_login(390_000)
    entry = known.lookup("chat.example", 12345)
    assert entry is not None
    assert entry.fingerprint == certificate_fingerprint(certificate)
    assert entry.iterations == 390_000
    again = ServerAddress("chat.example", 12345, known=known)
    again.check_certificate(certificate)
    assert again.trusted
    assert not again.remember_login(390_000)
    assert known.lookup("chat.example", 12346) is None
    assert known.path.read_text().count("\n") == 1


def test_changed_certificate_is_refused(known: KnownServers) -> None:
    """A remembered server with another certificate is refused, and the
    message says which line of which file to delete."""
    known.path.parent.mkdir()
    known.path.write_text("# servers\nother 1 AA\nchat.example 12345 AB:CD\n")
    address = ServerAddress("chat.example", 12345, known=known)
    with pytest.raises(FingerprintChanged) as caught:
        address.check_certificate(make_certificate())
    message = str(caught.value)
    assert "HAS CHANGED" in message
    assert "AB:CD" in message
    assert f"delete line 3 of\n  {known.path}" in message
    assert known.path.read_text().count("\n") == 3


def test_pin_wins_over_known_servers(known: KnownServers) -> None:
    """A pin from an invite is checked ignoring case and colons; the
    known-servers file keeps no fingerprint for it, only the iteration count."""
    certificate = make_certificate()
    pin = certificate_fingerprint(certificate).replace(":", "").lower()
    address = ServerAddress("chat.example", 12345, pin=pin, known=known)
    address.check_certificate(certificate)
    assert not address.remember_login(390_000)
    assert known.path.read_text() == "chat.example 12345 - iterations=390000\n"
    wrong = ServerAddress("chat.example", 12345, pin="AB:CD", known=known)
    with pytest.raises(FingerprintChanged, match="new invite"):
        wrong.check_certificate(certificate)


def test_default_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests and users can move the file; the default follows XDG."""
    monkeypatch.setenv(ENV_VAR, "/tmp/somewhere/known")
    assert default_path() == Path("/tmp/somewhere/known")
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/tmp/xdg")
    assert default_path() == Path("/tmp/xdg/partypool/known_servers")


def test_iteration_floor_is_the_highest_seen(known: KnownServers) -> None:
    """Issue 13.2: the count a server asked for in a successful login is
    remembered, only ever raised, and becomes the floor for the next login;
    a plain-TCP server is remembered too (fingerprint ``-``), and other
    lines of the file are kept as they were."""
    known.path.parent.mkdir()
    known.path.write_text("# mine\nother 1 AA:BB\n")
    address = ServerAddress("chat.example", 12345, tls=False, known=known)
    assert address.iteration_floor(390_000) == (390_000, None)
    assert not address.remember_login(600_000)
    floor, entry = address.iteration_floor(390_000)
    assert (floor, entry.line_number) == (600_000, 3)
    address.remember_login(500_000)  # lower: the higher count stays
    assert address.iteration_floor(4096)[0] == 600_000
    assert known.path.read_text() == (
        "# mine\nother 1 AA:BB\nchat.example 12345 - iterations=600000\n"
    )


def test_plain_entry_then_tls_is_first_use(known: KnownServers) -> None:
    """A server remembered without a certificate (plain TCP, or pinned by an
    invite) is trusted on first use when reached over TLS without a pin, and
    its line is updated in place."""
    known.path.parent.mkdir()
    known.path.write_text("chat.example 12345 - iterations=400000\n")
    certificate = make_certificate()
    address = ServerAddress("chat.example", 12345, known=known)
    address.check_certificate(certificate)
    assert address.remember_login(390_000)
    assert known.lookup("chat.example", 12345).iterations == 400_000
    assert known.path.read_text().count("\n") == 1

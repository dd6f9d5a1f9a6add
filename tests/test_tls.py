"""The chat port's TLS layer: certificate made once, kept, checked, reloadable;
small writes flushed together once per reactor turn."""

import subprocess

import pytest
from OpenSSL import SSL
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent

from partypool.tls import (
    ConfigError,
    OneTurnCalls,
    ServerTLS,
    certificate_fingerprint,
    check_private,
    ensure_self_signed,
)
from tests.helpers import make_pool


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


class _TCPTransport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802
        """The web door's HTTP channel sets it; nothing to do here."""


def _client_hello() -> bytes:
    """The first bytes a real TLS client sends."""
    client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    return client.bio_read(65536)


@pytest.mark.parametrize(
    ("door", "first"),
    [
        ("chat", b"AUTH SCRAM-SHA-256 biws\r\n"),
        ("irc", b"CAP LS 302\r\nNICK bob\r\n"),  # WeeChat 3's "-tls" is plain
        ("web", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ],
)
def test_a_plain_text_client_on_a_tls_port_is_logged_with_the_likely_cause(
    tmp_path, door, first
):
    """Every door wrapped in the one TLS layer: a peer whose first bytes are
    no TLS record gets one info line saying so; a real ClientHello none."""
    from twisted.internet.address import IPv4Address
    from twisted.logger import formatEvent, globalLogPublisher

    from partypool.doors.chat import ChatFactory
    from partypool.doors.irc import IrcFactory
    from partypool.doors.web import WebSite
    from tests.helpers import make_pool

    pool = make_pool()
    factories = {"chat": ChatFactory, "irc": IrcFactory, "web": WebSite}
    wrapped = ServerTLS(*ensure_self_signed(tmp_path)).wrap(
        factories[door](pool), Clock()
    )
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for data in (first, _client_hello()):
            protocol = wrapped.buildProtocol(None)
            protocol.makeConnection(
                _TCPTransport(
                    hostAddress=IPv4Address("TCP", "127.0.0.1", 29113),
                    peerAddress=IPv4Address("TCP", "127.0.0.1", 33186),
                )
            )
            protocol.dataReceived(data)
            plain = protocol.transport.disconnecting
            assert plain == (data is first)
    finally:
        globalLogPublisher.removeObserver(events.append)
    said = [formatEvent(e) for e in events if e.get("log_namespace") == "partypool.tls"]
    assert said == [
        "closing 127.0.0.1:33186 on port 29113: not TLS "
        "(a plain-text client on a TLS port?)"
    ]


def test_not_tls_line_names_the_peer_as_the_doors_do(tmp_path, logged):
    """The not-TLS line is grepped for with the address the doors log for the
    same peer (`host_and_peer`): an IPv4-mapped address in its IPv4 form."""
    from twisted.internet.address import IPv6Address
    from twisted.internet.task import Clock

    from partypool.doors.chat import ChatFactory
    from partypool.room.pool import host_and_peer
    from partypool.tls import ServerTLS, ensure_self_signed
    from tests.test_tls import _TCPTransport

    peer = IPv6Address("TCP", "::ffff:127.0.0.1", 33186)
    wrapped = ServerTLS(*ensure_self_signed(tmp_path)).wrap(
        ChatFactory(make_pool()), Clock()
    )
    protocol = wrapped.buildProtocol(None)
    protocol.makeConnection(
        _TCPTransport(hostAddress=IPv6Address("TCP", "::", 29113), peerAddress=peer)
    )
    protocol.dataReceived(b"AUTH SCRAM-SHA-256 biws\r\n")
    said = [formatEvent(e) for e in logged if e.get("log_namespace") == "partypool.tls"]
    assert said == [
        f"closing {host_and_peer(peer)[1]} on port 29113: not TLS "
        "(a plain-text client on a TLS port?)"
    ]

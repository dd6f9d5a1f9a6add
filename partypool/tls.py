"""TLS for the chat port: Party Pool's own layer, so it works on any endpoint.

With no certificate from the operator, a self-signed one is made on first
start and kept in the data directory.  `ServerTLS` wraps any listening
factory and can load a new certificate while running: new connections get it,
existing ones keep theirs.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

_log = Logger(namespace="partypool.tls")

# A client's first TLS record is a handshake record (its ClientHello).
TLS_HANDSHAKE_RECORD = 0x16


class ConfigError(Exception):
    """A start-up problem the operator must fix; the message says how."""


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate, as ``AB:CD:…`` (openssl's format)."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(
        serialization.Encoding.DER
    )
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def tls_server_end_point(certificate: x509.Certificate) -> bytes:
    """RFC 5929 ``tls-server-end-point`` data for the server's certificate:
    its DER hashed with the certificate's signature hash, SHA-256 when that is
    MD5 or SHA-1, and also when the signature has no separate hash (Ed25519,
    Ed448: RFC 5929 predates them; SHA-256 is what other implementations
    use). Both ends compute it from the certificate this connection used, so
    a relay that shows its own certificate gives the two ends different data."""
    algorithm = certificate.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(serialization.Encoding.DER))
    return digest.finalize()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def check_private(path: Path) -> None:
    """Refuse a secret file that group or others can read.

    Not on Windows, where ``os.stat`` reports every file as readable by all
    whatever its access list says (see `partypool.datadir`).
    """
    if sys.platform == "win32":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is readable by other users (mode {stat.filemode(mode)}); "
            f"fix it with: chmod 600 {path}"
        )


def ensure_self_signed(directory: Path) -> tuple[Path, Path]:
    """Return (cert, key) paths in ``directory``, making them on first use."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    for half in (cert_path, key_path):
        if half.exists():  # never make a key that would not match the other half
            raise ConfigError(
                f"{half} exists without its pair in {directory}; remove it to "
                "have a new self-signed certificate made"
            )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Server TLS settings from a certificate (chain) and key file; reloadable."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.reload()

    def reload(self) -> str:
        """Read the files again; return the new fingerprint.  Raises ConfigError."""
        check_private(self.key_path)
        try:
            leaf, *chain = x509.load_pem_x509_certificates(self.cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            options = ssl.CertificateOptions(
                privateKey=crypto.PKey.from_cryptography_key(key),
                certificate=crypto.X509.from_cryptography(leaf),
                extraCertChain=[crypto.X509.from_cryptography(c) for c in chain],
                raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            )
            options.getContext()  # fail now, not at the first connection
        except (OSError, ValueError, TypeError, SSL.Error) as e:
            raise ConfigError(
                f"cannot use TLS certificate {self.cert_path} with key "
                f"{self.key_path}: {e}"
            ) from None
        self._options = options
        self.fingerprint = certificate_fingerprint(
            leaf.public_bytes(serialization.Encoding.PEM)
        )
        return self.fingerprint

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:  # noqa: N802
        return SSL.Connection(self._options.getContext(), None)

    def wrap(
        self, factory: IProtocolFactory, clock: IReactorTime | None = None
    ) -> TLSMemoryBIOFactory:
        """TLS around ``factory``; ``clock`` is the reactor (the global one if None)."""
        if clock is None:
            from twisted.internet import reactor as clock
        return _ServerTLSFactory(self, False, factory, clock=OneTurnCalls(clock))


def _as_doors_log(host: str) -> str:
    """``host`` as the doors log it (`partypool.room.pool.host_and_peer`):
    an IPv4 client of a dual-stack listener (``::ffff:a.b.c.d``) by its IPv4
    address.  Not through that function: the clients ship this module, and
    not the server's rules."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return str(getattr(address, "ipv4_mapped", None) or address)


class _ServerTLSProtocol(BufferingTLSTransport):
    """Twisted's TLS transport, telling the log when a peer's first bytes
    are no TLS record: the handshake fails then, and the door only sees
    the connection lost, with no reason an operator could read.  Here,
    once, for every door that speaks TLS (chat port, web door, IRC gateway)."""

    _heard = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self._heard and data:
            self._heard = True
            if data[0] != TLS_HANDSHAKE_RECORD:
                peer = self.transport.getPeer()
                _log.info(
                    "closing {host}:{peer_port} on port {port}: not TLS "
                    "(a plain-text client on a TLS port?)",
                    host=_as_doors_log(getattr(peer, "host", str(peer))),
                    peer_port=getattr(peer, "port", "?"),
                    port=getattr(self.transport.getHost(), "port", "?"),
                )
        super().dataReceived(data)


class _ServerTLSFactory(TLSMemoryBIOFactory):
    protocol = _ServerTLSProtocol


class _TurnCall:
    """One call queued by `OneTurnCalls`: it can be cancelled, the one thing
    the TLS transport does with the calls it schedules."""

    __slots__ = ("function", "pending")

    def __init__(self, function: Callable[[], object]) -> None:
        self.function = function
        self.pending = True

    def active(self) -> bool:
        return self.pending

    def cancel(self) -> None:
        self.pending = False


@implementer(IReactorTime)
class OneTurnCalls:
    """The clock given to the TLS layer: all ``callLater(0, f)`` of a turn run as one.

    Twisted's TLS transport gathers a connection's small writes and sends them
    as one record on the next reactor turn, through ``callLater(0, flush)``:
    one timer per connection.  A room broadcast to N members therefore pushes
    N entries onto the reactor's timer heap, which already holds every
    connection's keepalive timer, and pops them again; with thousands of
    members that heap work cost more than the encryption.  Here those calls
    share a single reactor timer.  Any other delay goes to the reactor as is.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        self._due: list[_TurnCall] = []

    def callLater(  # noqa: N802
        self, delay: float, function: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall | _TurnCall:
        if delay > 0 or args or kw:
            return self._reactor.callLater(delay, function, *args, **kw)
        call = _TurnCall(function)
        if not self._due:
            self._reactor.callLater(0, self._run)
        self._due.append(call)
        return call

    def _run(self) -> None:
        due, self._due = self._due, []
        for call in due:
            if call.pending:
                call.pending = False
                try:
                    call.function()
                except Exception:
                    _log.failure("flushing a TLS connection")

    def seconds(self) -> float:
        return self._reactor.seconds()

    def getDelayedCalls(self) -> list[IDelayedCall]:  # noqa: N802
        return self._reactor.getDelayedCalls()

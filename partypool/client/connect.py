"""
How the client reaches a server: endpoints built in code (a frozen program
cannot find endpoint plugins by string), TLS 1.2+ with the certificate pinned
by fingerprint instead of by certificate authority, or plain TCP when asked.

The pin is checked in L{ChatClientProtocol.handshakeCompleted}, before the
server's first line is read, so nothing that depends on the passkey is sent
to a server with the wrong certificate. Without a pin, a first-seen
certificate is remembered only after a login bound to it (SCRAM-SHA-256-PLUS,
see L{partypool.client.protocol}) succeeded: a relay showing its own
certificate fails that login, so it is never remembered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import attrs
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from zope.interface import implementer

from partypool.client.known_servers import (
    Entry,
    FingerprintChanged,
    KnownServers,
    same_fingerprint,
)
from partypool.tls import certificate_fingerprint as _pem_fingerprint


def certificate_fingerprint(certificate: X509) -> str:
    """The server's fingerprint of C{certificate} (L{partypool.tls}'s, so
    invites, the server and the client always agree on the format)."""
    return _pem_fingerprint(certificate.to_cryptography().public_bytes(Encoding.PEM))


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class PinnedTLS:
    """
    TLS 1.2+ without certificate-authority checks: the server's certificate
    is usually self-signed and is checked by fingerprint afterwards.
    """

    hostname: str

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_NONE)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tlsProtocol)
        if not _is_ip_address(self.hostname):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_connect_state()
        return connection


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@attrs.define
class ServerAddress:
    """
    Where a server is and how to trust it.

    @ivar pin: the fingerprint from an invite or C{--fingerprint}, if any;
        without one the known-servers file decides (trust on first use).
    @ivar seen: the fingerprint the last connection showed.
    """

    host: str
    port: int
    tls: bool = True
    pin: str | None = None
    known: KnownServers | None = None
    seen: str | None = None

    def endpoint(self, reactor: IReactorTCP | IReactorTime) -> IStreamClientEndpoint:
        """A fresh endpoint for one connection attempt."""
        tcp = HostnameEndpoint(reactor, self.host, self.port, timeout=15)
        return wrapClientTLS(PinnedTLS(self.host), tcp) if self.tls else tcp

    def peer_check(self) -> Callable[[X509 | None], None] | None:
        """The check for L{ChatClientProtocol}, or None for plain TCP."""
        return self.check_certificate if self.tls else None

    def _entry(self) -> Entry | None:
        return self.known.lookup(self.host, self.port) if self.known else None

    def check_certificate(self, certificate: X509 | None) -> None:
        """Refuse a certificate that does not match the pin or the
        remembered fingerprint; raises L{FingerprintChanged}."""
        if certificate is None:
            raise FingerprintChanged(
                self.host, self.port, self.pin or "?", "(none)", "The server sent none."
            )
        self.seen = actual = certificate_fingerprint(certificate)
        if self.pin is not None:
            if not same_fingerprint(self.pin, actual):
                raise FingerprintChanged(
                    self.host,
                    self.port,
                    self.pin,
                    actual,
                    "The expected fingerprint came from your invite or "
                    "--fingerprint;\nask the administrator for a new invite.",
                )
            return
        entry = self._entry()
        if entry is None or entry.fingerprint is None:
            return  # first use: remembered once the login succeeds
        if not same_fingerprint(entry.fingerprint, actual):
            raise FingerprintChanged(
                self.host,
                self.port,
                entry.fingerprint,
                actual,
                self.how_to_reset(entry),
            )

    @property
    def trusted(self) -> bool:
        """Whether this server's certificate was known before this login
        (pinned, or remembered): else a relay could be in the middle, and only
        the channel-bound login tells."""
        if self.pin is not None:
            return True
        entry = self._entry()
        return entry is not None and entry.fingerprint is not None

    def iteration_floor(self, minimum: int) -> tuple[int, Entry | None]:
        """The fewest PBKDF2 iterations to accept: C{minimum}, or the count
        remembered for this server if higher (with its entry)."""
        entry = self._entry()
        if entry is None or entry.iterations is None or entry.iterations <= minimum:
            return minimum, None
        return entry.iterations, entry

    def how_to_reset(self, entry: Entry) -> str:
        """What to tell a user who trusts a changed server."""
        assert self.known is not None
        return self.known.how_to_reset(entry)

    def remember_login(self, iterations: int | None) -> bool:
        """After a successful login (the server proved it knows the secret,
        and over TLS that the certificate we saw is its own), remember a
        first-seen certificate and a higher iteration count; True if the
        certificate was new."""
        if self.known is None:
            return False
        entry = self._entry()
        known_print = entry.fingerprint if entry is not None else None
        known_count = entry.iterations if entry is not None else None
        new_print = self.pin is None and self.tls and known_print is None
        fingerprint = self.seen if new_print else known_print
        count = max(filter(None, (known_count, iterations)), default=None)
        if entry is None or fingerprint != known_print or count != known_count:
            try:
                self.known.remember(self.host, self.port, fingerprint, count)
            except OSError:
                return False
        return new_print and self.seen is not None

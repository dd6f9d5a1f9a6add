"""A scripted chat server for client unit tests: real SCRAM (scramp's server
side, with ``tls-server-end-point`` channel binding when the connection plays
TLS), lines fed straight into the client protocol, no sockets."""

from __future__ import annotations

import base64
import tempfile
from functools import cache
from pathlib import Path

from cryptography import x509
from OpenSSL.crypto import X509
from scramp import ScramException, ScramMechanism
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.client.protocol import ChatClientProtocol
from partypool.room.auth import CHANNEL_BINDING
from partypool.tls import ensure_self_signed, tls_server_end_point

PASSKEY = "correct horse battery staple"
#: PBKDF2 iterations of the scripted server; clients under test accept them.
FAST = 4096


def make_client(passkey: str = PASSKEY, *args, **kwargs) -> ChatClientProtocol:
    """A client protocol that accepts the scripted server's cheap count."""
    kwargs.setdefault("min_iterations", FAST)
    return ChatClientProtocol(passkey, *args, **kwargs)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


@cache
def certificate(label: str = "server") -> x509.Certificate:
    """A self-signed certificate made as the server makes its own (one per
    label, so a test can have a server's and a relay's)."""
    with tempfile.TemporaryDirectory() as directory:
        cert_path, _ = ensure_self_signed(Path(directory) / label)
        return x509.load_pem_x509_certificate(cert_path.read_bytes())


@implementer(ISSLTransport)
class TLSStringTransport(StringTransport):
    """A StringTransport that says it is TLS and shows C{shown} as the
    server's certificate."""

    def __init__(self, shown: x509.Certificate) -> None:
        super().__init__()
        self.shown = shown

    def getPeerCertificate(self) -> X509:  # noqa: N802
        return X509.from_cryptography(self.shown)


class ScriptedServer:
    """Plays the server's side of one client connection.

    @param tls: the certificate the server binds its SCRAM exchange to (its
        own); the connection then plays TLS.
    @param shown: the certificate the client sees (default: C{tls}; another
        one is what a relay in the middle shows).
    """

    def __init__(
        self,
        proto: Protocol,
        passkey: str = PASSKEY,
        *,
        iterations: int = FAST,
        tls: x509.Certificate | None = None,
        shown: x509.Certificate | None = None,
    ) -> None:
        self.proto = proto
        self.tls = tls
        if tls is None:
            self.transport = StringTransport()
        else:
            self.transport = TLSStringTransport(shown or tls)
        proto.makeConnection(self.transport)
        self.auth_info = ScramMechanism("SCRAM-SHA-256").make_auth_info(
            passkey, iteration_count=iterations
        )

    def send(self, *lines: str) -> None:
        for line in lines:
            self.proto.dataReceived(line.encode() + b"\r\n")

    def received(self) -> list[str]:
        """Lines the client sent since the last call."""
        data = self.transport.value().decode()
        self.transport.clear()
        return data.splitlines()

    def log_in(self, server_final: str | None = None) -> None:
        """HELLO and a full SCRAM exchange, refused like the real server
        does for a wrong passkey (or a channel binding that does not match);
        C{server_final} replaces the genuine server-final message (to test
        the signature check)."""
        self.send("HELLO partypool/1 Test Pool")
        [auth] = self.received()
        verb, self.mechanism, first = auth.split(" ")
        assert verb == "AUTH"
        binding = None
        if self.tls is not None:
            binding = (CHANNEL_BINDING, tls_server_end_point(self.tls))
        self.scram = ScramMechanism(self.mechanism).make_server(
            lambda username: self.auth_info, channel_binding=binding
        )
        self.client_first = unb64(first)
        self.scram.set_client_first(self.client_first)
        self.send(f"AUTH-CHALLENGE {b64(self.scram.get_server_first())}")
        received = self.received()
        if not received:
            return  # the client stopped at the challenge
        [response] = received
        verb, final = response.split(" ")
        assert verb == "AUTH-RESPONSE"
        try:
            self.scram.set_client_final(unb64(final))
        except ScramException:
            self.send("ERR auth-failed wrong passkey", "BYE auth-failed")
            return
        self.send(f"AUTH-OK {b64(server_final or self.scram.get_server_final())}")

    def lose(self) -> None:
        """The connection drops (the client's transport tells it)."""
        self.transport.loseConnection()
        self.proto.connectionLost(Failure(ConnectionLost("gone")))

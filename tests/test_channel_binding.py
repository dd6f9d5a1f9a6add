"""SCRAM-SHA-256-PLUS end to end in memory (issue 13.1): the real client
protocol and the real chat door over real TLS (pyOpenSSL memory BIOs on both
sides, ``twisted.test.iosim``), including a certificate reloaded while a
connection that started before it logs in."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.connect import PinnedTLS
from partypool.client.protocol import ChatClientProtocol
from partypool.doors.chat import ChatFactory
from partypool.tls import ServerTLS, ensure_self_signed
from tests.helpers import PASSKEY, make_pool


class ChannelBindingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = make_pool(self.clock)
        directory = Path(self.mktemp())
        self.cert, self.key = ensure_self_signed(directory / "tls")
        self.tls = ServerTLS(self.cert, self.key)
        self.spare = ensure_self_signed(directory / "spare")

    def connect(
        self, passkey: str = PASSKEY
    ) -> tuple[ChatClientProtocol, iosim.IOPump]:
        client = ChatClientProtocol(passkey, min_iterations=4096)
        client_side = TLSMemoryBIOFactory(
            PinnedTLS("localhost"),
            True,
            Factory.forProtocol(lambda: client),
            clock=self.clock,
        ).buildProtocol(None)
        server_side = self.tls.wrap(ChatFactory(self.pool), self.clock).buildProtocol(
            None
        )
        pump = iosim.connect(
            server_side,
            iosim.FakeTransport(
                server_side,
                isServer=True,
                peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            ),
            client_side,
            iosim.FakeTransport(client_side, isServer=False),
            clock=self.clock,
        )
        return client, pump

    def reload_certificate(self) -> None:
        cert, key = self.spare
        self.cert.write_bytes(cert.read_bytes())
        self.key.write_bytes(key.read_bytes())
        self.tls.reload()

    def test_bound_login_over_real_tls(self) -> None:
        client, pump = self.connect()
        pump.flush()
        self.assertEqual(self.successResultOf(client.logged_in), "unit")

    def test_wrong_passkey_over_real_tls(self) -> None:
        client, pump = self.connect("not the passkey")
        pump.flush()
        self.failureResultOf(client.logged_in)

    def test_certificate_reloaded_during_a_login(self) -> None:
        """The connection binds to the certificate it was made with: a reload
        between its start and its login does not fail it, and a connection
        after the reload binds to the new certificate."""
        before, pump = self.connect()
        self.reload_certificate()
        pump.flush()
        self.successResultOf(before.logged_in)
        after, pump = self.connect()
        pump.flush()
        self.successResultOf(after.logged_in)
        self.assertNotEqual(
            before.transport.getPeerCertificate().digest("sha256"),
            after.transport.getPeerCertificate().digest("sha256"),
        )

"""The chat port: one `ChatProtocol` per connection, speaking protocol v1.

The contract in brief (docs/protocol.md has the whole of it and every
detail): the server greets ``HELLO partypool/1 <server-name>``; the
client logs in with SCRAM-SHA-256 (``AUTH`` / ``AUTH-CHALLENGE`` /
``AUTH-RESPONSE`` / ``AUTH-OK``), picks a name (``NICK`` / ``OK NICK``), then
sends ``SAY``, ``ONLINE``, ``IP``, ``REQUEST``, ``PING`` and ``QUIT``.  Every
line gets its documented reply or exactly one ``ERR <code> <text>``; the
server closes only after a ``BYE <reason>`` line, except for a reader so slow
it would never see one.

The rules live in the door-neutral `partypool.room.session.Session`, the
verbs in the v1 dialect `partypool.doors.v1.V1Dialect`; neither knows of
sockets.  This module is only the TCP/TLS carrier of the dialect: framing,
TLS handshake state and ``TCP_NODELAY``; the output backlog (a reader too
slow to keep up is dropped) and room events held for the next round of
writes are every carrier's (`partypool.doors.outlet`).  `ChatProtocol` is
the dialect's `~partypool.doors.v1.Outlet`.

Framing is our own (`partypool.doors.framing`): LineReceiver's would drop
the connection, and the good lines behind it, on one overlong line.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IHandshakeListener, ISSLTransport
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.doors.framing import LineFramer
from partypool.doors.outlet import HeldOutput
from partypool.doors.v1 import V1Dialect
from partypool.room.pool import PartyPool, host_and_peer
from partypool.room.session import Session
from partypool.tls import tls_server_end_point

# The chat port's namespace: operators filter the log on it.
log = Logger(namespace="partypool.doors.chat")


@implementer(IHandshakeListener)
class ChatProtocol(HeldOutput, LineReceiver):
    """One chat connection: carries the lines of its `V1Dialect`.

    A LineReceiver in name only (the documented contract calls it one): it
    does its own framing in `dataReceived` and never uses LineReceiver's.
    """

    delimiter = b"\r\n"

    def __init__(self, pool: PartyPool) -> None:
        super().__init__()
        self.pool = pool
        self.dialect: V1Dialect | None = None
        self.session: Session | None = None
        self._framer = LineFramer(pool.limits.max_line)  # a door may use its own

    # -- connection life ---------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        host, peer = host_and_peer(self.transport.getPeer())
        handshaking = ISSLTransport.providedBy(self.transport)
        self.dialect = self.make_dialect(host, peer, handshaking)
        self.session = self.dialect.session
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self.backlog, True)
        self.dialect.start()

    def make_dialect(self, host: str, peer: str, handshaking: bool) -> V1Dialect:
        """The dialect this connection speaks (another door's carrier, such
        as the IRC gateway's, overrides this and `dataReceived`)."""
        return V1Dialect(
            self.pool,
            host,
            peer,
            self,
            handshaking=handshaking,
            log=log,
            channel_binding=self._channel_binding if handshaking else None,
        )

    def _channel_binding(self) -> bytes | None:
        """``tls-server-end-point`` data of the certificate this connection
        showed: its own, so a certificate reloaded since does not matter."""
        certificate = self.transport.getHandle().get_certificate()
        if certificate is None:
            return None
        return tls_server_end_point(certificate.to_cryptography())

    def handshakeCompleted(self) -> None:  # noqa: N802
        self.session.handshake_done()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.forget_held()  # nowhere to send it now
        self.session.lost()

    # -- Outlet (partypool.doors.v1) ---------------------------------------------

    def transmit(self, data: bytes) -> None:
        self.transport.write(data)

    def too_slow(self) -> None:
        self.session.too_slow()

    def close(self) -> None:
        self.write_held()
        self.transport.unregisterProducer()  # TLS sends close_notify only without one
        self.transport.loseConnection()

    def abort(self) -> None:
        self.forget_held()
        self.transport.abortConnection()

    # -- input ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        session, dialect = self.session, self.dialect
        for line in self._framer.feed(data):
            if session.closed:
                return
            if line is None:
                dialect.line_too_long()
            else:
                dialect.line(line)


class ChatFactory(ServerFactory):
    """Makes a `ChatProtocol` for each connection to the chat port."""

    noisy = False

    def __init__(self, pool: PartyPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:  # noqa: N802
        protocol = ChatProtocol(self.pool)
        protocol.factory = self
        return protocol

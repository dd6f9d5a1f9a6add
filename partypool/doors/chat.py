"""The chat port: one `ChatProtocol` per connection, speaking protocol v1.

The contract in brief (../shared/PROTOCOL.md is the source, docs/protocol.md
the details): the server greets ``HELLO partypool/1 <server-name>``; the
client logs in with SCRAM-SHA-256 (``AUTH`` / ``AUTH-CHALLENGE`` /
``AUTH-RESPONSE`` / ``AUTH-OK``), picks a name (``NICK`` / ``OK NICK``), then
sends ``SAY``, ``ONLINE``, ``IP``, ``REQUEST``, ``PING`` and ``QUIT``.  Every
line gets its documented reply or exactly one ``ERR <code> <text>``; the
server closes only after a ``BYE <reason>`` line, except for a reader so slow
it would never see one.

The rules live in the door-neutral `partypool.room.session.Session`, the
verbs in the v1 dialect `partypool.doors.v1.V1Dialect`; neither knows of
sockets.  This module is only the TCP/TLS carrier of the dialect: framing,
the output backlog (a reader too slow to keep up is dropped), room events
held for the next round of writes (`partypool.room.gather`), TLS handshake
state and ``TCP_NODELAY``.  `ChatProtocol` is the dialect's
`~partypool.doors.v1.Outlet`.

Framing is our own: LineReceiver's would drop the connection, and the good
lines behind it, on one overlong line.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IPushProducer,
    ISSLTransport,
)
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.doors.v1 import V1Dialect
from partypool.room.pool import PartyPool, host_and_peer
from partypool.room.session import Session
from partypool.tls import tls_server_end_point

# The chat port's namespace: operators filter the log on it.
log = Logger(namespace="partypool.doors.chat")

# Held room events past this many bytes are written at once: a round would
# only make the piece bigger, and the output backlog check sees them sooner.
HELD_MAX = 64 * 1024


@implementer(IPushProducer)
class _Backlog:
    """Counts bytes written while the transport pushes back."""

    def __init__(self) -> None:
        self.paused = False
        self.size = 0

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self.size = 0

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = True


@implementer(IHandshakeListener)
class ChatProtocol(LineReceiver):
    """One chat connection: carries the lines of its `V1Dialect`.

    A LineReceiver in name only (the documented contract calls it one): it
    does its own framing in `dataReceived` and never uses LineReceiver's.
    """

    delimiter = b"\r\n"

    def __init__(self, pool: PartyPool) -> None:
        self.pool = pool
        self.dialect: V1Dialect | None = None
        self.session: Session | None = None
        self._buffer = b""
        self._discarding = False
        self._backlog = _Backlog()
        self._held: list[bytes] = []
        self._held_size = 0

    # -- connection life ---------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        host, peer = host_and_peer(self.transport.getPeer())
        handshaking = ISSLTransport.providedBy(self.transport)
        self.dialect = self.make_dialect(host, peer, handshaking)
        self.session = self.dialect.session
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self._backlog, True)
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
        self._forget_held()  # nowhere to send it now
        self.session.lost()

    # -- Outlet (partypool.doors.v1) ---------------------------------------------

    def write(self, data: bytes) -> None:
        if self._held:  # what the room said first goes first
            self._held.append(data)
            data = self._take_held()
        self._send(data)

    def gather(self, data: bytes) -> None:
        if not self._held:
            self.pool.gatherer.hold(self)
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > HELD_MAX:
            self.write_held()

    def write_held(self) -> bool:
        if not self._held:
            return False
        self._send(self._take_held())
        return True

    def _take_held(self) -> bytes:
        data = b"".join(self._held)
        self._forget_held()
        return data

    def _forget_held(self) -> None:
        self._held = []
        self._held_size = 0

    def _send(self, data: bytes) -> None:
        backlog = self._backlog
        if backlog.paused:
            backlog.size += len(data)
            if backlog.size > self.pool.limits.max_pending:
                self.session.too_slow()
                return
        self.transport.write(data)

    def close(self) -> None:
        self.write_held()
        self.transport.unregisterProducer()  # TLS sends close_notify only without one
        self.transport.loseConnection()

    def abort(self) -> None:
        self._forget_held()
        self.transport.abortConnection()

    # -- input ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Split on ``\\n``, dropping an ``\\r`` before it; skip overlong lines."""
        session, dialect = self.session, self.dialect
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1 :]
            self._discarding = False
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        max_line = self.pool.limits.max_line
        for line in lines:
            if session.closed:
                return
            if len(line) + 1 > max_line:
                session.line_too_long()
                continue
            dialect.line(line[:-1] if line.endswith(b"\r") else line)
        if len(self._buffer) >= max_line and not session.closed:
            self._buffer = b""
            self._discarding = True
            session.line_too_long()


class ChatFactory(ServerFactory):
    """Makes a `ChatProtocol` for each connection to the chat port."""

    noisy = False

    def __init__(self, pool: PartyPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:  # noqa: N802
        protocol = ChatProtocol(self.pool)
        protocol.factory = self
        return protocol

"""The web door: the page a browser joins with, and protocol v1 over a WebSocket.

The contract (docs/protocol.md, "The web door"):

- ``GET /`` serves the page (``index.html``, ``app.js``, ``style.css``,
  ``icon.svg``: package data, with ETags); ``GET /ws`` is a WebSocket.
- One WebSocket text message carries exactly one v1 line, without its line
  ending, in both directions.  The same `~partypool.doors.v1.V1Dialect` and
  `~partypool.room.session.Session` as on the chat port serve it, so every
  limit, throttle and timer applies here too (the keepalive ``PING`` and the
  login timeout are the idle timeouts).
- A message longer than ``--max-line`` (its UTF-8 bytes and one for the line
  ending it does not carry) is answered ``ERR line-too-long`` and dropped
  without being kept whole; a binary message is answered ``ERR bad-encoding``;
  either way the session goes on.
- A WebSocket whose ``Origin`` is neither the page's own nor one listed with
  ``--web-origin`` gets ``403``.  (Clients that send no ``Origin`` — scripts,
  not browsers — are let in: there is no cookie or other ambient credential a
  foreign page could borrow, the check only keeps other sites' pages out.)
- Every response carries a strict Content-Security-Policy and the other
  headers in `SECURITY_HEADERS`.
- An HTTP connection that has not become a WebSocket has not logged in: it
  counts with the chat doors' connections that have not
  (`~partypool.room.pool.Unauthenticated`: ``--max-pending-logins`` per
  address group, ``--max-unauthenticated`` in all), and is closed unless
  each request arrives whole within ``--login-timeout`` seconds of the
  connection or of the request before (`_Channel`).
- A request announcing a body (``Content-Length`` above 0, or any
  ``Transfer-Encoding``) gets ``413`` from its headers: nothing takes one.
  Pipelined requests are answered only as fast as the peer reads them.

Twisted's WebSocket support parses frames, answers pings and does the close
handshake.  It has no hook to limit a message's size, so `WebProtocol`
replaces the buffers it reassembles messages in with bounded ones (the one
place this module reaches into Twisted's internals; the tests pin it).
Outgoing lines are framed here (`text_frames`): a room event is framed once
and the same bytes go to every browser in the room.
"""

from __future__ import annotations

import hashlib
import struct
from importlib import resources

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages, server
from twisted.web.resource import Resource
from twisted.web.websocket import WebSocketResource, WebSocketTransport

from partypool.doors.outlet import HeldOutput
from partypool.doors.v1 import V1Dialect
from partypool.room.pool import PartyPool, host_and_peer
from partypool.room.session import Session
from partypool.wire import WireError

# The web door's namespace: operators filter the log on it.
log = Logger(namespace="partypool.doors.web")

SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'none'; script-src 'self'; style-src 'self'; "
        b"img-src 'self'; connect-src 'self'; base-uri 'none'; "
        b"form-action 'none'; frame-ancestors 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"cross-origin-opener-policy": b"same-origin",
}

_STATIC = {
    b"": ("index.html", b"text/html; charset=utf-8"),
    b"app.js": ("app.js", b"text/javascript; charset=utf-8"),
    b"style.css": ("style.css", b"text/css; charset=utf-8"),
    b"icon.svg": ("icon.svg", b"image/svg+xml"),
}


def text_frames(data: bytes) -> bytes:
    """Each CRLF-ended line of ``data`` as one unmasked text frame (RFC 6455 §5.2)."""
    frames = []
    for line in data.split(b"\r\n")[:-1]:
        size = len(line)
        if size < 126:
            frames.append(bytes((0x81, size)))
        elif size < 1 << 16:
            frames.append(struct.pack("!BBH", 0x81, 126, size))
        else:
            frames.append(struct.pack("!BBQ", 0x81, 127, size))
        frames.append(line)
    return b"".join(frames)


class _TooLong:
    """What a bounded buffer hands on instead of a message over the limit."""


TOO_LONG = _TooLong()


class _LineBuffer:
    """Reassembles one text message, keeping at most ``limit`` UTF-8 bytes of it.

    Stands in for Twisted's own buffer (``add`` each piece, ``done`` at the
    end of the message), which would keep a message of any size.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0

    def add(self, piece: str) -> None:
        if self._size > self.limit:
            return
        self._size += len(piece.encode("utf-8"))
        if self._size > self.limit:
            self._parts = []
        else:
            self._parts.append(piece)

    def done(self) -> str | _TooLong:
        message = TOO_LONG if self._size > self.limit else "".join(self._parts)
        self._parts = []
        self._size = 0
        return message


class _Refused:
    """Stands in for the binary-message buffer: keeps nothing."""

    def add(self, piece: bytes) -> None:
        pass

    def done(self) -> bytes:
        return b""


class WebProtocol(HeldOutput):
    """One browser's WebSocket: carries the lines of its `V1Dialect`.

    A Twisted `~twisted.web.websocket.WebSocketProtocol` on one side, the
    dialect's `~partypool.doors.v1.Outlet` on the other.
    """

    def __init__(
        self, pool: PartyPool, address: IAddress, channel: http.HTTPChannel
    ) -> None:
        super().__init__()
        self.pool = pool
        self._channel = channel
        self._address = address
        self._ws: WebSocketTransport | None = None
        self.dialect: V1Dialect | None = None
        self.session: Session | None = None

    # -- WebSocketProtocol ----------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:  # noqa: N802
        self._ws = transport
        # Twisted would keep every message whole, however long: bound it.
        transport._textBuffer = _LineBuffer(self.pool.limits.max_line - 1)
        transport._bytesBuffer = _Refused()

    def negotiationFinished(self) -> None:  # noqa: N802
        host, peer = host_and_peer(self._address)
        self.dialect = V1Dialect(
            self.pool, host, peer, self, handshaking=False, log=log
        )
        self.session = self.dialect.session
        self._channel.registerProducer(self.backlog, True)
        self.dialect.start()

    def textMessageReceived(self, message: str | _TooLong) -> None:  # noqa: N802
        session = self.session
        if session.closed:
            return
        if message is TOO_LONG:
            self.dialect.line_too_long()
        else:
            self.dialect.line(message.encode("utf-8"))

    def bytesMessageReceived(self, data: bytes) -> None:  # noqa: N802
        session = self.session
        if not session.closed and session.admit_line():
            self.dialect.error(
                WireError("bad-encoding", "send text messages, not binary; discarded")
            )

    def pongReceived(self, payload: bytes) -> None:  # noqa: N802
        """Browsers answer WebSocket pings on their own; ours are v1 PINGs."""

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.forget_held()
        if self.session is not None:
            self.session.lost()

    # -- Outlet (partypool.doors.v1) --------------------------------------------

    def encode(self, data: bytes) -> bytes:
        return _frames_once(data)

    def transmit(self, data: bytes) -> None:
        self._ws.transport.write(data)

    def too_slow(self) -> None:
        self.session.too_slow()

    def close(self) -> None:
        self.write_held()
        # TLS sends close_notify only without a producer (the HTTP channel).
        self._ws.transport.unregisterProducer()
        self._ws.loseConnection(1000)

    def abort(self) -> None:
        self.forget_held()
        self._ws.transport.abortConnection()


_last_event: tuple[bytes, bytes] = (b"", b"")


def _frames_once(data: bytes) -> bytes:
    """`text_frames`, remembering the last result: a room event's line is one
    bytes object handed to every member in turn, so it is framed once."""
    global _last_event
    wire, frames = _last_event
    if data is not wire:
        frames = text_frames(data)
        _last_event = (data, frames)
    return frames


class _Socket(WebSocketResource):
    """``/ws``: checks the ``Origin``, then hands the connection to a `WebProtocol`."""

    def __init__(self, pool: PartyPool, origins: frozenset[str]) -> None:
        super().__init__(self)
        self.pool = pool
        self.origins = origins

    def render_GET(self, request: server.Request) -> bytes | int:  # noqa: N802
        origin = request.getHeader(b"origin")
        if origin is not None and not self._allowed(request, origin.decode("latin-1")):
            log.info(
                "refused a WebSocket from {peer}: foreign origin {origin}",
                peer=host_and_peer(request.getClientAddress())[1],
                origin=origin.decode("latin-1"),
            )
            return pages.forbidden(
                "Forbidden", "Pages of this origin may not connect here."
            ).render(request)
        return super().render_GET(request)

    def _allowed(self, request: server.Request, origin: str) -> bool:
        origin = origin.lower().rstrip("/")
        if origin in self.origins:
            return True
        host = request.getHeader(b"host")
        scheme = "https" if request.isSecure() else "http"
        return (
            host is not None
            and origin == f"{scheme}://{host.decode('latin-1')}".lower()
        )

    def buildProtocol(self, request: server.Request) -> WebProtocol:  # noqa: N802
        channel = request.channel
        channel.uncount()  # the session counts itself now
        return WebProtocol(self.pool, request.getClientAddress(), channel)


class _File(Resource):
    """One static file of the page, from package data, with its ETag."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type
        self.etag = b'"%s"' % hashlib.sha256(body).hexdigest()[:32].encode("ascii")

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-cache")  # revalidate: ETag
        if request.setETag(self.etag) == http.CACHED:
            return b""
        return self.body


class _Root(Resource):
    """``/``: the page's files and ``/ws`` as children, nothing else."""

    def getChild(self, path: bytes, request: server.Request) -> Resource:  # noqa: N802
        return pages.notFound()


def page_resource(pool: PartyPool, origins: frozenset[str]) -> Resource:
    """The resource tree: the page's files and ``/ws``."""
    root = _Root()
    files = resources.files("partypool.doors") / "web_static"
    for path, (name, content_type) in _STATIC.items():
        root.putChild(path, _File((files / name).read_bytes(), content_type))
    root.putChild(b"ws", _Socket(pool, origins))
    return root


class _Request(server.Request):
    """A request whose every response carries `SECURITY_HEADERS`."""

    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        super().process()


#: Bytes of further requests a connection may send while the answer to an
#: earlier one waits for it to read.  Browsers do not pipeline; this is one
#: whole request head (Twisted's ``totalHeadersSize``).
PIPELINED_MAX = 16 * 1024


class _Channel(http.HTTPChannel):
    """An HTTP connection of the web door, until it becomes a WebSocket.

    It has not logged in, so it counts with the chat doors' sessions that
    have not either (``PartyPool.unauthenticated``: one rule for every door,
    per address group and in all, where a full port closes the oldest
    connection of the busiest address).  And it must send each request
    whole within ``--login-timeout`` seconds of connecting or of its last
    request: a fixed deadline, not Twisted's idle timeout, which any byte
    restarts (a request trickled a byte at a time would hold the descriptor
    for days).  The upgrade ends both: the WebSocket's session counts itself
    and runs its own login timer.

    What one connection can make the server hold before that is bounded
    too: a request head by Twisted's limits (16 KiB, 500 headers), a body
    not at all (the page and ``/ws`` take none: ``413`` from the headers),
    and answers by the peer's reading: while the transport has paused the
    channel (its buffer is full) no further request is answered or read,
    and more than `PIPELINED_MAX` bytes sent ahead closes the connection.
    """

    _deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        host, peer = host_and_peer(self.transport.getPeer())
        refusal = self.site.pool.unauthenticated.admit(self, host)
        if refusal is not None:
            log.info("refused {peer}: {refusal}", peer=peer, refusal=refusal)
            self.transport.abortConnection()
        else:
            self._await_request()

    def _await_request(self) -> None:
        pool = self.site.pool
        self._deadline = pool.clock.callLater(pool.limits.login_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        self.transport.abortConnection()

    def allContentReceived(self) -> None:  # noqa: N802
        """A request arrived whole: the next one has ``--login-timeout`` again
        (unless this one is the upgrade, which stops the deadline)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._await_request()
        super().allContentReceived()

    # -- what one connection may make the server hold -------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Parse requests, unless the peer has stopped reading: then keep what
        it sends ahead, up to `PIPELINED_MAX` bytes, and close past that.
        Nothing more once closing (a refused body may still be arriving)."""
        if self.transport.disconnecting:
            return
        super().dataReceived(data)
        if self.paused and len(self._buffer) > PIPELINED_MAX:
            reason = "requests pipelined too far ahead of their answers"
            self._refused(reason)
            self.disconnect(reason)

    def pauseProducing(self) -> None:  # noqa: N802
        """The transport's buffer is full (the peer is not reading): answer
        nothing more until it empties.  Twisted would go on answering the
        requests already received, each answer queued in memory."""
        super().pauseProducing()
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        """The peer read: go on with the requests it sent meanwhile."""
        super().resumeProducing()
        self.paused = False
        if not self._handlingRequest:  # an upgraded channel always is
            self.dataReceived(b"")

    def requestDone(self, request: http.Request) -> None:  # noqa: N802
        """Answered; while the peer does not read, read nothing more either
        (Twisted reads on: it paused the transport only between requests)."""
        super().requestDone(request)
        if self.paused and self.persistent:
            self._networkProducer.pauseProducing()

    def allHeadersReceived(self) -> None:  # noqa: N802
        """The page and ``/ws`` take no body: one announced is refused from
        the headers, before anything is read or stored (Twisted would keep
        it, over 100 kB in a temporary file)."""
        headers = self.requests[-1].requestHeaders
        if self.length == 0 and not headers.hasHeader(b"transfer-encoding"):
            super().allHeadersReceived()
            return
        self.length = None  # so HTTPChannel does not go on to answer it
        self._refused("a request with a body (413)")
        head = [b"HTTP/1.1 413 Content Too Large", b"Content-Length: 0"]
        head += [b"Connection: close"]
        head += [name + b": " + value for name, value in SECURITY_HEADERS.items()]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n")
        self.loseConnection()  # and `dataReceived` drops what follows

    def _refused(self, what: str) -> None:
        peer = host_and_peer(self.transport.getPeer())[1]
        log.info("closing {peer}: {what}", peer=peer, what=what)

    def disconnect(self, reason: str) -> None:
        """Close now (`~partypool.room.pool.Unauthenticated` makes room):
        there is no request to answer, or one whose answer would wait."""
        self.uncount()
        self.transport.abortConnection()

    def uncount(self) -> None:
        """Became a WebSocket, or is closing: no longer counted, no deadline."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.site.pool.unauthenticated.release(self)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.uncount()
        super().connectionLost(reason)


class WebSite(server.Site):
    """The web door's HTTP server: the page and ``/ws``.

    No access log: the session logs each WebSocket as the chat port logs a
    connection, and page fetches are not worth keeping addresses for.  No
    idle timeout either: `_Channel` has a deadline instead.
    """

    protocol = _Channel
    requestFactory = _Request
    displayTracebacks = False
    noisy = False

    def __init__(self, pool: PartyPool, origins: frozenset[str] = frozenset()) -> None:
        super().__init__(page_resource(pool, origins), timeout=None, reactor=pool.clock)
        self.pool = pool

    def log(self, request: server.Request) -> None:
        """No access log (see the class docstring)."""


def parse_origins(text: str | None) -> frozenset[str]:
    """``--web-origin``: comma-separated origins such as ``https://chat.example.org``."""
    if not text:
        return frozenset()
    origins = set()
    for origin in text.split(","):
        origin = origin.strip().lower().rstrip("/")
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(
                f"{origin!r} is not an origin (scheme://host[:port], e.g. "
                "https://chat.example.org)"
            )
        origins.add(origin)
    return frozenset(origins)

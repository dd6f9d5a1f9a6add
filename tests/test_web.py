"""The web door in memory: HTTP through StringTransport, the WebSocket spoken by
wsproto's real client side, time from a fake Clock.  Pins the page and its
headers, the Origin check, one line per message, the size limit and binary
refusal, the connection caps, and that the door drives the same session."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.web import http
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol, Opcode

from partypool.doors.web import PIPELINED_MAX, WebSite, parse_origins, text_frames
from partypool.room.pool import MAKE_ROOM
from tests.helpers import Peer, connect, make_pool, unit_limits
from tests.test_irc_gateway import irc_connect

HOST = "127.0.0.1:12347"
ORIGIN = f"http://{HOST}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock):
    return make_pool(clock)


def http_connection(
    site: WebSite,
    host: str = "127.0.0.1",
    port: int = 40000,
    transport: StringTransport | None = None,
):
    channel = site.buildProtocol(IPv4Address("TCP", host, port))
    transport = transport or StringTransport()
    transport.peerAddr = IPv4Address("TCP", host, port)
    channel.makeConnection(transport)
    return channel, transport


def get(site: WebSite, path: str, *headers: tuple[str, str]) -> tuple[int, dict, bytes]:
    """One plain HTTP GET: status, headers (lower-case names), body."""
    channel, transport = http_connection(site)
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: " + HOST,
        *(f"{k}: {v}" for k, v in headers),
    ]
    channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(": ")
        fields[name.lower()] = value
    return int(status_line.split()[1]), fields, body


@attrs.define(eq=False)
class WebPeer(Peer):
    """A browser's WebSocket to the door: `Peer`'s login and join work on it."""

    client: WSConnection = None
    clock: Clock = None
    rejected: int | None = None
    closed: CloseConnection | None = None

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            text = line if isinstance(line, str) else line.decode("utf-8")
            self.protocol.dataReceived(self.client.send(TextMessage(text)))

    def twisted_socket(self):
        """Twisted's WebSocket protocol, which the channel hands its data after
        the upgrade."""
        return self.protocol.dataReceived.__self__

    def send_binary(self, data: bytes) -> None:
        self.protocol.dataReceived(self.client.send(BytesMessage(data)))

    def received(self) -> list[str]:
        """The text messages sent to this browser since the last call."""
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        self.client.receive_data(data)
        messages, pieces = [], []
        for event in self.client.events():
            if isinstance(event, TextMessage):
                pieces.append(event.data)
                if event.message_finished:
                    messages.append("".join(pieces))
                    pieces = []
            elif isinstance(event, CloseConnection):
                self.closed = event
            elif isinstance(event, RejectConnection):
                self.rejected = event.status_code
        assert not pieces
        assert not any("\r" in m or "\n" in m for m in messages), messages
        return messages


def open_socket(
    pool, site: WebSite | None = None, origin: str | None = ORIGIN, host="127.0.0.1"
) -> WebPeer:
    """Connect a WebSocket to /ws, as a browser on ``origin`` would."""
    site = site or WebSite(pool)
    channel, transport = http_connection(site, host)
    client = WSConnection(ConnectionType.CLIENT)
    headers = [] if origin is None else [(b"origin", origin.encode())]
    channel.dataReceived(client.send(Request(HOST, "/ws", extra_headers=headers)))
    peer = WebPeer(channel, transport, client=client, clock=pool.clock)
    return peer


def test_page_and_its_files_carry_the_security_headers(pool):
    """Every file of the page, and a 404, carry the CSP and the other headers."""
    site = WebSite(pool)
    for path, kind in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/icon.svg", "image/svg+xml"),
        ("/nothing-here", None),
    ]:
        status, headers, body = get(site, path)
        assert status == (404 if kind is None else 200), path
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        if kind:
            assert headers["content-type"].startswith(kind)
            assert headers["etag"].startswith('"')
    status, _, body = get(site, "/")
    assert b'<script type="module" src="app.js"></script>' in body
    assert b"<script>" not in body and b" on" + b"click=" not in body  # nothing inline


def test_etag_answers_not_modified(pool):
    site = WebSite(pool)
    _, headers, _ = get(site, "/app.js")
    status, _, body = get(site, "/app.js", ("If-None-Match", headers["etag"]))
    assert status == http.NOT_MODIFIED and body == b""


def test_page_is_small():
    """The whole page (HTML, CSS, JavaScript, icon) stays under 50 KB."""
    from importlib import resources

    files = resources.files("partypool.doors") / "web_static"
    assert sum(len(f.read_bytes()) for f in files.iterdir()) < 50_000


def test_one_line_per_message_through_the_same_session(pool):
    """HELLO, SCRAM login, NICK, and chat with a chat-port user, one line a message."""

    browser = open_socket(pool)
    assert browser.received() == ["HELLO partypool/1 unit"]
    browser.join("phone")
    terminal = connect(pool, host="127.0.0.5")
    terminal.received()
    terminal.join("desk")
    assert browser.received() == ["JOINED desk"]
    browser.send("SAY hello desk", "ONLINE")
    assert browser.received() == ["ONLINE 2 desk phone"]
    assert terminal.received() == ["CHAT phone hello desk"]
    terminal.send("SAY hi phone")
    terminal.send("SAY and again")
    assert browser.received() == ["CHAT desk hi phone", "CHAT desk and again"]
    assert browser.twisted_socket()._wsp.session in pool.connections


def test_foreign_origin_gets_403_and_no_session(pool):
    browser = open_socket(pool, origin="https://evil.example")
    assert browser.received() == []
    assert browser.rejected == http.FORBIDDEN
    assert not pool.connections


@pytest.mark.parametrize(
    "origin, allowed",
    [
        (ORIGIN, True),
        (ORIGIN.upper(), True),
        (None, True),  # not a browser: nothing a foreign page could borrow
        ("https://127.0.0.1:12347", False),  # the page is http here
        ("http://127.0.0.1:9999", False),
        ("https://chat.example.org", True),  # listed with --web-origin
        ("null", False),
    ],
)
def test_origin_check(pool, origin, allowed):
    site = WebSite(pool, parse_origins("https://Chat.example.org/"))
    browser = open_socket(pool, site, origin=origin)
    lines = browser.received()
    assert (lines == ["HELLO partypool/1 unit"]) is allowed
    assert (browser.rejected is None) is allowed


@pytest.mark.parametrize("bad", ["chat.example.org", "ftp://x", "https://x/path", ""])
def test_web_origin_must_be_origins(bad):
    with pytest.raises(ValueError, match="is not an origin"):
        parse_origins(f"https://ok.example,{bad}" if bad else ",")


def test_oversized_message_is_refused_and_the_session_goes_on(pool):
    """A message over --max-line gets ERR line-too-long and is never kept whole."""
    browser = open_socket(pool)
    browser.received()
    browser.join("phone")
    limit = pool.limits.max_line
    exact = "x" * (limit - 6)  # "PING " and the line ending it does not carry
    browser.send("PING " + exact)
    browser.send("PING " + exact + "x")
    browser.send("PING " + "é" * (limit // 2 - 2))  # fewer characters, more bytes
    browser.send("PING still-here")
    too_long = f"ERR line-too-long lines are at most {limit} bytes; discarded"
    assert browser.received() == [
        "PONG " + exact,
        too_long,
        too_long,
        "PONG still-here",
    ]


def test_oversized_message_is_not_buffered(pool):
    """Fragments past the limit are dropped as they come, not kept until the end."""
    browser = open_socket(pool)
    browser.received()
    wire = (
        browser.protocol
    )  # the channel; after the upgrade its data goes to the socket
    piece = "y" * 10_000
    for n in range(50):
        wire.dataReceived(
            browser.client.send(TextMessage(piece, message_finished=n == 49))
        )
        kept = browser.twisted_socket()._textBuffer
        assert sum(len(p) for p in kept._parts) < pool.limits.max_line
    assert browser.received()[0].startswith("ERR line-too-long ")


def test_binary_message_is_refused_and_the_session_goes_on(pool):
    browser = open_socket(pool)
    browser.received()
    browser.send_binary(b"SAY hi")
    browser.send("PING x")
    assert browser.received() == [
        "ERR bad-encoding send text messages, not binary; discarded",
        "PONG x",
    ]


def test_binary_messages_count_against_the_rate_limit(pool):
    browser = open_socket(pool)
    browser.received()
    for _ in range(pool.limits.burst + 1):
        browser.send_binary(b"x")
    assert browser.received()[-1].startswith("ERR rate-limited ")


def test_quit_says_bye_and_closes(pool, clock):
    browser = open_socket(pool)
    browser.received()
    browser.join("phone")
    browser.send("QUIT bye all")
    assert browser.received() == ["BYE quit"]
    assert browser.closed is not None and browser.closed.code == 1000
    assert browser.transport.disconnecting
    browser.twisted_socket().connectionLost(None)
    assert not pool.connections
    assert clock.getDelayedCalls() == []


def test_login_timeout_closes_a_silent_socket(pool, clock):
    browser = open_socket(pool)
    browser.received()
    clock.advance(pool.limits.login_timeout)
    assert browser.received() == ["ERR timeout login took too long", "BYE timeout"]
    browser.twisted_socket().connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_a_full_room_refuses_web_sessions_too(clock):
    pool = make_pool(clock, max_clients=1)
    first = open_socket(pool, host="127.0.0.2")
    first.received()
    first.join("one")
    second = open_socket(pool, host="127.0.0.3")
    assert second.received()[1].startswith("ERR server-full ")


def test_one_session_per_address_across_doors(pool):

    terminal = connect(pool, host="127.0.0.7")
    terminal.received()
    terminal.join("desk")
    browser = open_socket(pool, host="127.0.0.7")
    assert browser.received()[1].startswith("ERR duplicate-ip ")


# -- HTTP connections before the upgrade: not logged in, as at every door ------


def _http6(site: WebSite, host: str) -> StringTransport:
    channel = site.buildProtocol(IPv6Address("TCP", host, 40000))
    transport = StringTransport(peerAddress=IPv6Address("TCP", host, 40000))
    channel.makeConnection(transport)
    return transport


def test_http_connections_are_capped_per_address(clock):
    pool = make_pool(clock, limits=unit_limits(max_pending_logins=2))
    site = WebSite(pool)
    kept = [http_connection(site, "127.0.0.2")[1] for _ in range(2)]
    _, refused = http_connection(site, "127.0.0.2")
    assert refused.disconnecting and not any(t.disconnecting for t in kept)
    _, other = http_connection(site, "127.0.0.3")
    assert not other.disconnecting


def test_http_cap_counts_an_ipv6_64_as_one_address(pool):
    site = WebSite(pool)
    opened = [_http6(site, f"2001:db8::{i:x}") for i in range(1, 60)]
    admitted = sum(not t.disconnecting for t in opened)
    assert admitted == pool.limits.max_pending_logins
    assert not _http6(site, "2001:db8:0:1::1").disconnecting  # the next /64


def test_http_and_other_doors_share_the_per_address_cap(clock):
    """One count of connections not logged in for the chat doors: HTTP
    connections, WebSockets, the chat port and IRC before registration."""
    pool = make_pool(clock, limits=unit_limits(max_pending_logins=3))
    site = WebSite(pool)
    http_connection(site, "127.0.0.2")
    irc_connect(pool, host="127.0.0.2")
    open_socket(pool, site, host="127.0.0.2").received()
    _, refused = http_connection(site, "127.0.0.2")
    assert refused.disconnecting
    terminal = connect(pool, host="127.0.0.2")
    assert terminal.received()[1].startswith("ERR auth-throttled ")


def test_an_upgrade_keeps_its_place_in_the_count(clock):
    """The upgrade hands the HTTP connection's place to the WebSocket's
    session, which counts until it is named."""
    pool = make_pool(clock, limits=unit_limits(max_pending_logins=1))
    site = WebSite(pool)
    browser = open_socket(pool, site, host="127.0.0.2")
    assert browser.received()[0].startswith("HELLO ")  # not auth-throttled
    assert pool.unauthenticated.count("127.0.0.2") == 1
    _, refused = http_connection(site, "127.0.0.2")
    assert refused.disconnecting  # the WebSocket has not logged in yet
    browser.join("web")
    assert not pool.unauthenticated
    _, later = http_connection(site, "127.0.0.2")
    assert not later.disconnecting


def test_idle_http_connection_times_out(pool, clock):
    site = WebSite(pool)
    channel, transport = http_connection(site)
    clock.advance(pool.limits.login_timeout)
    assert transport.disconnecting
    channel.connectionLost(Failure(ConnectionDone()))
    assert not pool.unauthenticated and clock.getDelayedCalls() == []


def test_web_http_trickle_is_closed_after_the_login_timeout(pool, clock):
    """A request trickled a byte at a time never completes: each byte used
    to restart Twisted's idle timeout, so it stayed open."""
    site = WebSite(pool)
    channel, transport = http_connection(site, "10.1.1.1")
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    for _ in range(5):
        clock.advance(pool.limits.login_timeout - 1)
        channel.dataReceived(b"X")
    assert transport.disconnecting


def test_each_request_must_arrive_whole_within_the_login_timeout(pool, clock):
    """A whole request gives the connection --login-timeout again for the
    next; a next one trickled, or none, closes it as a first would."""
    site = WebSite(pool)
    request = f"GET /style.css HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    for trickle in (True, False):
        channel, transport = http_connection(site, "10.1.1.2")
        for _ in range(3):
            clock.advance(pool.limits.login_timeout - 1)
            channel.dataReceived(request)
        assert transport.value().count(b"200 OK") == 3
        assert not transport.disconnecting
        if trickle:
            channel.dataReceived(b"GET / HTTP/1.1\r\n")
        clock.advance(pool.limits.login_timeout - 1)
        if trickle:
            channel.dataReceived(b"X")
        assert not transport.disconnecting
        clock.advance(1)
        assert transport.disconnecting
        channel.connectionLost(Failure(ConnectionDone()))
    assert not pool.unauthenticated and clock.getDelayedCalls() == []


def test_the_upgrade_stops_the_http_deadline(pool, clock):
    browser = open_socket(pool)
    browser.received()
    browser.join("web")
    clock.advance(pool.limits.login_timeout + 1)
    assert not browser.transport.disconnecting
    assert browser.received() == []


def test_silent_web_connections_of_ten_addresses_do_not_lock_out_others(clock):
    """As at the chat port (--max-unauthenticated), a newcomer closes the
    oldest connection of the address holding the most, instead of being
    refused while silent connections hold the door."""
    pool = make_pool(clock)
    site = WebSite(pool)
    crowd = [
        http_connection(site, f"10.2.0.{a}")[1]
        for a in range(1, 11)
        for _ in range(pool.limits.max_pending_logins)
    ]
    _, newcomer = http_connection(site, "10.3.3.3")
    assert not newcomer.disconnecting
    assert crowd[0].disconnecting and not any(t.disconnecting for t in crowd[1:])
    assert len(pool.unauthenticated) == pool.limits.max_unauthenticated


def test_a_full_port_makes_room_whatever_the_door(clock):
    """One policy for every door's connections not logged in: whichever door
    the newcomer uses, the busiest address's oldest goes, with its own door's
    goodbye — IRC before registration, a WebSocket before login, HTTP."""
    pool = make_pool(clock, limits=unit_limits(max_unauthenticated=5))
    site = WebSite(pool)
    sockets = [open_socket(pool, site, host="192.0.2.20") for _ in range(2)]
    irc = [irc_connect(pool, host="192.0.2.9", port=40000 + n) for n in range(3)]
    for peer in sockets:
        peer.received()
    _, newcomer = http_connection(site, "198.51.100.1")
    assert not newcomer.disconnecting
    assert irc[0].transport.disconnecting and MAKE_ROOM in irc[0].received()[-1]
    connect(pool, host="198.51.100.2")
    assert sockets[0].received()[-1] == f"BYE {MAKE_ROOM}"
    assert not any(p.transport.disconnecting for p in [sockets[1], *irc[1:]])
    assert len(pool.unauthenticated) == 5


def test_a_newcomer_at_another_door_closes_the_busiest_64s_oldest_http(clock):
    pool = make_pool(clock, limits=unit_limits(max_unauthenticated=4))
    site = WebSite(pool)
    flood = [_http6(site, f"2001:db8::{n}") for n in range(1, 4)]
    irc_connect(pool, host="192.0.2.9")
    newcomer = connect(pool, host="198.51.100.3")
    assert newcomer.received()[0].startswith("HELLO ")
    assert [t.disconnecting for t in flood] == [True, False, False]


#: twisted.internet.abstract.FileDescriptor.bufferSize: past it a real
#: transport pauses its producer (the HTTP channel) until the peer reads.
BUFFER_SIZE = 2**16
APP_JS = f"GET /app.js HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


class PeerNotReading(StringTransport):
    """A TCP transport whose peer does not read: once more than `BUFFER_SIZE`
    bytes wait, it pauses its producer, as `FileDescriptor.write` does, until
    the peer reads them all (`read`), as `FileDescriptor.doWrite` resumes it."""

    full = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > BUFFER_SIZE and not self.full and self.producer:
            self.full = True
            self.producer.pauseProducing()

    def read(self) -> bytes:
        data = self.value()
        self.clear()
        if self.full:
            self.full = False
            self.producer.resumeProducing()
        return data


def test_pipelined_requests_to_a_peer_that_does_not_read_are_bounded(pool, logged):
    """2,000 pipelined ``GET /app.js`` in one read (64 KiB, one recv of the
    reactor): the door stops answering once the transport says its buffer is
    full, instead of queueing 2,000 answers (32 MB; the real server reached
    2.8 GiB from one connection), and closes: that much sent ahead of its
    answers is more than it keeps."""
    transport = PeerNotReading()
    channel, _ = http_connection(WebSite(pool), transport=transport)
    channel.dataReceived(APP_JS * 2000)
    answers = transport.value().count(b"HTTP/1.1 200 OK")
    assert answers < 20, f"{answers} answers, {len(transport.value())} bytes queued"
    assert transport.disconnecting
    assert "pipelined too far ahead" in " ".join(map(formatEvent, logged))
    channel.connectionLost(Failure(ConnectionDone()))
    assert not pool.unauthenticated


def test_pipelined_requests_are_answered_as_the_peer_reads(pool):
    """Pipelining works, in order, at the pace the peer reads: while it does
    not, the door answers nothing more and reads nothing more."""
    site = WebSite(pool)
    paths = ["/app.js"] * 9 + ["/icon.svg"]
    data = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode() for path in paths
    )
    channel, reader = http_connection(site)
    channel.dataReceived(data)
    assert reader.value().count(b"HTTP/1.1 200 OK") == len(paths)  # a reader

    transport = PeerNotReading()
    channel, _ = http_connection(site, transport=transport)
    channel.dataReceived(data)
    answered = []
    while transport.full:
        assert transport.producerState == "paused"  # not reading either
        sent = transport.value().count(b"HTTP/1.1 200 OK")
        assert 0 < sent < len(paths) - len(answered)
        answered += [sent]
        transport.read()
    assert sum(answered) + transport.value().count(b"200 OK") == len(paths)
    assert transport.value().endswith(site.resource.children[b"icon.svg"].body)
    assert len(answered) > 1 and transport.producerState == "producing"
    assert not transport.disconnecting


def test_what_a_peer_that_does_not_read_sends_ahead_is_capped(pool, clock):
    """While an answer waits for the peer to read, the door keeps at most
    PIPELINED_MAX bytes of what it sends next (a browser sends nothing), and
    the peer that never reads is closed at --login-timeout like an idle one."""
    site = WebSite(pool)
    transport = PeerNotReading()
    channel, _ = http_connection(site, transport=transport)
    channel.dataReceived(APP_JS * 5)
    assert transport.full and transport.value().count(b"200 OK") == 4
    kept = len(APP_JS)
    while kept + len(APP_JS) <= PIPELINED_MAX:
        channel.dataReceived(APP_JS)
        kept += len(APP_JS)
    assert not transport.disconnecting
    channel.dataReceived(APP_JS)
    assert transport.disconnecting and transport.value().count(b"200 OK") == 4

    transport = PeerNotReading()
    channel, _ = http_connection(site, transport=transport)
    channel.dataReceived(APP_JS * 5)
    clock.advance(pool.limits.login_timeout - 1)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting and transport.value().count(b"200 OK") == 4


def test_a_websocket_whose_peer_reads_again_goes_on(pool):
    """The upgraded connection keeps the chat doors' rule (--max-pending,
    `test_a_browser_that_does_not_read_is_dropped`): the HTTP channel's pause
    and resume pass to its session and parse no HTTP."""
    browser = open_socket(pool)
    browser.received()
    browser.join("web")
    browser.transport.producer.pauseProducing()
    browser.transport.producer.resumeProducing()
    browser.send("ONLINE")
    assert browser.received() == ["ONLINE 1 web"]
    assert not browser.transport.disconnecting


def _refused_unstored(site: WebSite, channel, transport, stored: list) -> bytes:
    """What the door answered; checks that nothing was kept or answered after."""
    answer = transport.value()
    assert transport.disconnecting
    channel.dataReceived(b"A" * 2**20)  # the body, still arriving
    assert transport.value() == answer
    assert stored == []
    assert all(request.content is None for request in channel.requests)
    assert b"100 Continue" not in answer
    channel.connectionLost(Failure(ConnectionDone()))
    assert not site.pool.unauthenticated
    return answer


def _recording_site(pool) -> tuple[WebSite, list]:
    site = WebSite(pool)
    stored = []
    site.getContentFile = lambda length: stored.append(length)  # noqa: ARG005
    return site, stored


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 1000000000\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["content-length", "chunked"],
)
def test_web_request_body_is_refused_not_stored(pool, framing, logged):
    """The page and ``/ws`` take no body: a ``POST`` of 1 GB is refused (413)
    from its headers, not read into a temporary file (the real server kept
    279 MiB in /tmp from one connection in 2 s)."""
    site, stored = _recording_site(pool)
    channel, transport = http_connection(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n")
    channel.dataReceived(framing + b"\r\n")
    chunk = b"A" * 2**20
    body = chunk if b"Length" in framing else b"%x\r\n%s\r\n" % (len(chunk), chunk)
    for _ in range(8):
        if transport.disconnecting:
            break
        channel.dataReceived(body)
    answer = _refused_unstored(site, channel, transport, stored)
    assert answer.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert ": a request with a body (413)" in " ".join(map(formatEvent, logged))


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "OPTIONS"])
@pytest.mark.parametrize(
    "header",
    [
        "Content-Length: 1",
        "content-length: 1000000000",
        "CONTENT-LENGTH:5",
        "Content-Length: 00001",
        "Transfer-Encoding: chunked",
        "transfer-encoding: Chunked",
        "TRANSFER-ENCODING: identity",
        "Expect: 100-continue\r\nContent-Length: 5",
        "Content-Length: 0\r\nTransfer-Encoding: identity",
    ],
)
def test_any_request_announcing_a_body_gets_413_from_its_headers(pool, method, header):
    site, stored = _recording_site(pool)
    channel, transport = http_connection(site)
    channel.dataReceived(
        f"{method} / HTTP/1.1\r\nHost: {HOST}\r\n{header}\r\n\r\n".encode()
    )
    answer = _refused_unstored(site, channel, transport, stored)
    head = answer.decode("latin-1").lower()
    assert head.startswith("http/1.1 413 content too large\r\n")
    assert "\r\nconnection: close\r\n" in head
    assert "\r\ncontent-security-policy: default-src 'none'" in head


@pytest.mark.parametrize(
    "header",
    [
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 0",
        "Transfer-Encoding: gzip, chunked",
        "Content-Length: 5, 5",
        "Content-Length: -1",
        "Content-Length: 1e9",
    ],
)
def test_a_body_framed_twice_or_wrongly_is_refused_too(pool, header):
    """Twisted answers these 400 itself; either way, nothing is read."""
    site, stored = _recording_site(pool)
    channel, transport = http_connection(site)
    channel.dataReceived(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n{header}\r\n\r\n".encode())
    answer = _refused_unstored(site, channel, transport, stored)
    assert answer.split(b" ")[1] in (b"400", b"413")


def test_a_websocket_handshake_with_a_body_is_refused(pool):
    site, stored = _recording_site(pool)
    channel, transport = http_connection(site)
    client = WSConnection(ConnectionType.CLIENT)
    handshake = client.send(
        Request(HOST, "/ws", extra_headers=[(b"origin", ORIGIN.encode())])
    )
    head, _, _ = handshake.partition(b"\r\n\r\n")
    channel.dataReceived(head + b"\r\nContent-Length: 11\r\n\r\nPASS secret")
    answer = _refused_unstored(site, channel, transport, stored)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert not pool.connections


def test_no_body_and_an_empty_one_are_served(pool):
    for header in ("Content-Length: 0", "Content-Length: 000", "X-A: b"):
        status, _, body = get(WebSite(pool), "/style.css", tuple(header.split(": ")))
        assert status == http.OK and body


@pytest.mark.parametrize(
    "data",
    [
        "GET / HTTP/1.1\r\n" + "X-A: b\r\n" * 600,  # Twisted's maxHeaders
        "GET / HTTP/1.1\r\n" + f"X-A: {'b' * 100}\r\n" * 170,  # totalHeadersSize
        f"GET /{'a' * 17000} HTTP/1.1\r\n",  # a long request line
        f"GET /{'a' * 2**20}",  # a request line without an end
        "GET / HTTP/1.1\r\nX-A: " + "b" * 2**20,  # a header without an end
    ],
    ids=["many", "long", "long-line", "endless-line", "endless-header"],
)
def test_request_heads_are_bounded(pool, data):
    """Twisted's limits: 500 headers, and 16 KiB for the request line and
    the headers together; past them, the connection is closed with what it
    sent dropped, and whatever it goes on sending is not kept."""
    site = WebSite(pool)
    channel, transport = http_connection(site)
    data = data.encode()
    for start in range(0, len(data), 2**16):
        channel.dataReceived(data[start : start + 2**16])
    assert transport.disconnecting
    assert transport.value() in (b"", b"HTTP/1.1 400 Bad Request\r\n\r\n")
    channel.dataReceived(b"X-B: c\r\n" * 10_000)
    assert len(channel._buffer) <= channel.totalHeadersSize


def test_room_events_are_framed_once_for_everyone(pool):
    """Every browser gets the same frame bytes for one room event."""
    sender = open_socket(pool, host="127.0.0.2")
    sender.received()
    sender.join("talker")
    listeners = []
    for n in range(3):
        listener = open_socket(pool, host=f"127.0.0.{n + 3}")
        listener.received()
        listener.join(f"l{n}")
        listeners.append(listener)
    sender.received()
    for listener in listeners:
        listener.received()
    sender.send("SAY one for all")
    pool.clock.advance(0)
    framed = {bytes(listener.transport.value()) for listener in listeners}
    assert framed == {text_frames(b"CHAT talker one for all\r\n")}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_text_frames_parse_as_websocket_frames(size):
    """Our framing read back by wsproto's client, at each length encoding."""
    reader = FrameProtocol(client=True, extensions=[])
    lines = [b"a" * size, "second línea".encode()]
    reader.receive_bytes(text_frames(b"".join(line + b"\r\n" for line in lines)))
    frames = list(reader.received_frames())
    assert [(f.opcode, f.message_finished) for f in frames] == [(Opcode.TEXT, True)] * 2
    assert [f.payload for f in frames] == [line.decode() for line in lines]


def test_rejects_are_plain_http(pool):
    """A WebSocket handshake without the upgrade headers is a 400, not a crash."""
    status, headers, _ = get(WebSite(pool), "/ws")
    assert status == http.BAD_REQUEST
    assert "content-security-policy" in headers


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    ]
    r, g, b = linear
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colours_meet_wcag_aa(scheme):
    """Every text colour on every background it is used on: at least 4.5:1."""
    import re
    from importlib import resources

    css = (resources.files("partypool.doors") / "web_static" / "style.css").read_text()
    blocks = re.findall(r":root \{(.*?)\}", css, re.S)
    colours = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", blocks[0]))
    if scheme == "dark":
        colours |= dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", blocks[1]))
    pairs = [
        ("fg", "bg"),
        ("muted", "bg"),
        ("error", "bg"),
        ("mine", "bg"),
        ("accent", "bg"),
        ("on-accent", "accent"),
        ("notice-fg", "notice-bg"),
        ("fg", "private-bg"),
        ("muted", "private-bg"),
        ("fg", "history"),
        ("muted", "history"),
        ("mine", "history"),
        ("fg", "card"),
        ("muted", "card"),
        ("error", "card"),
    ]
    for text, background in pairs:
        ratio = _contrast(colours[text], colours[background])
        assert ratio >= 4.5, (scheme, text, background, round(ratio, 2))


def test_binary_message_is_not_buffered(pool):
    """Fragments of a binary message are dropped as they come."""
    browser = open_socket(pool)
    browser.received()
    for n in range(20):
        browser.protocol.dataReceived(
            browser.client.send(BytesMessage(b"z" * 10_000, message_finished=n == 19))
        )
        assert browser.twisted_socket()._bytesBuffer.done() == b""
    assert browser.received()[0].startswith("ERR bad-encoding ")


def test_invalid_utf8_text_closes_with_1007(pool, clock):
    """Not UTF-8 in a text message breaks RFC 6455 itself: close code 1007."""
    browser = open_socket(pool)
    browser.received()
    browser.protocol.dataReceived(bytes((0x81, 0x82)) + b"\0\0\0\0" + b"\xff\xfe")
    assert browser.received() == []
    assert browser.closed is not None and browser.closed.code == 1007
    browser.twisted_socket().connectionLost(None)
    assert not pool.connections and clock.getDelayedCalls() == []


def test_a_browser_that_does_not_read_is_dropped(clock):
    """The output backlog applies to the web door: past --max-pending, the
    reader is dropped (LEFT … too slow) instead of buffered without bound."""

    pool = make_pool(clock, limits=unit_limits(max_pending=4096))
    slow = open_socket(pool, host="127.0.0.2")
    slow.received()
    slow.join("slow")
    talker = connect(pool, host="127.0.0.3")
    talker.received()
    talker.join("talker")
    slow.received()
    slow.transport.producer.pauseProducing()  # the socket's buffer is full
    for n in range(60):
        talker.send(f"SAY {n} " + "x" * 100)
        clock.advance(1)  # within the rate limit
    assert "LEFT slow too slow" in talker.received()
    assert slow.transport.disconnecting
    slow.twisted_socket().connectionLost(None)
    assert slow.twisted_socket()._wsp.session not in pool.connections


def test_the_page_never_parses_text_as_html():
    """The script only ever inserts text: no HTML-parsing sinks at all."""
    from importlib import resources

    script = (resources.files("partypool.doors") / "web_static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in script
    assert "eval(" not in script and "new Function" not in script

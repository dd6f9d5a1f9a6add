"""The chat port: one `ChatProtocol` per connection, speaking protocol v1.

The contract in brief (../shared/PROTOCOL.md is the source, docs/protocol.md
the details): the server greets ``HELLO partypool/1 <server-name>``; the
client logs in with SCRAM-SHA-256 (``AUTH`` / ``AUTH-CHALLENGE`` /
``AUTH-RESPONSE`` / ``AUTH-OK``), picks a name (``NICK`` / ``OK NICK``), then
sends ``SAY``, ``ONLINE``, ``IP``, ``REQUEST``, ``PING`` and ``QUIT``.  Every
line gets its documented reply or exactly one ``ERR <code> <text>``; the
server closes only after a ``BYE <reason>`` line, except for a reader so slow
it would never see one.

Framing is our own: LineReceiver's would drop the connection, and the good
lines behind it, on one overlong line.
"""

from __future__ import annotations

import base64
import binascii
import collections
import secrets

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    ISSLTransport,
)
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.auth import SCRAM_MECHANISM, AuthFailed, ScramExchange
from partypool.room import Event
from partypool.server import PartyPool
from partypool.wire import (
    PROTOCOL_VERSION,
    WireError,
    clean_text,
    error_line,
    format_line,
    parse_line,
    scrub,
)

log = Logger(namespace="partypool.chat")

# state -> verbs accepted in it, and the error for any other verb
_ALWAYS = {"PING", "PONG", "QUIT"}
_STATES = {
    "login": ({"AUTH"} | _ALWAYS, "auth-required", "log in first (AUTH)"),
    "challenge": ({"AUTH-RESPONSE"} | _ALWAYS, "auth-required", "finish logging in"),
    "naming": ({"NICK"} | _ALWAYS, "nick-required", "choose a name first (NICK)"),
    "chatting": ({"SAY", "ONLINE", "IP", "REQUEST"} | _ALWAYS, None, None),
}
_AFTER_LOGIN = {
    "AUTH": ("already-authenticated", "you are already logged in"),
    "AUTH-RESPONSE": ("already-authenticated", "you are already logged in"),
    "NICK": ("already-named", "names are fixed for the session"),
}
_QUIT_REASON_MAX = 200
# After BYE, how long a peer may take to let the connection close (a TLS peer
# that never finished its handshake would otherwise hold it open for ever).
CLOSE_GRACE = 10.0


def host_and_peer(address: IAddress) -> tuple[str, str]:
    """The host as the server sees it, and ``host:port`` for the administrator."""
    host = getattr(address, "host", None)
    if host is None:
        return str(address), str(address)
    return host, f"{host}:{address.port}"


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


class _TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@implementer(IHandshakeListener)
class ChatProtocol(LineReceiver):
    """One chat connection, and the room member it becomes once named."""

    delimiter = b"\r\n"

    def __init__(self, pool: PartyPool) -> None:
        self.pool = pool
        self.name: str | None = None
        self.state = "new"
        self._buffer = b""
        self._discarding = False
        self._exchange: ScramExchange | None = None
        self._pending_login = False
        self._timers: dict[str, IDelayedCall] = {}
        self._backlog = _Backlog()
        self._pinged_at: float | None = None  # when our unanswered PING went out
        self._drops: collections.deque[float] = collections.deque()
        self._last_rate_error = float("-inf")
        self._handshaking = False  # on TLS, until the handshake completes

    # -- connection life ---------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        pool, clock = self.pool, self.pool.clock
        self.host, self.peer = host_and_peer(self.transport.getPeer())
        self._handshaking = ISSLTransport.providedBy(self.transport)
        self.since = self.last_heard = clock.seconds()
        self._bucket = _TokenBucket(pool.limits.rate, pool.limits.burst, self.since)
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self._backlog, True)
        pool.connections.add(self)
        self.state = "login"
        self._write(format_line("HELLO", PROTOCOL_VERSION, pool.server_name))
        log.info("connect from {peer}", peer=self.peer)
        refusal = self.pool.room.admission_error(self.host)
        if pool.pending_logins[self.host] >= pool.limits.max_pending_logins:
            refusal = WireError(
                "auth-throttled", "too many pending logins from your address"
            )
        if refusal is not None:
            log.info("refused {peer}: {code}", peer=self.peer, code=refusal.code)
            self._goodbye(refusal.code, error=refusal)
            return
        pool.pending_logins[self.host] += 1
        self._pending_login = True
        self._timers["login"] = clock.callLater(
            pool.limits.login_timeout, self._login_timed_out
        )
        self._timers["idle"] = clock.callLater(pool.limits.idle_ping, self._idle_check)

    def handshakeCompleted(self) -> None:  # noqa: N802
        self._handshaking = False

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._end_pending_login()
        self.pool.connections.discard(self)
        if self.pool.room.leave(self, "lost"):
            log.info("{name} lost ({peer})", name=self.name, peer=self.peer)
        self.state = "closed"

    def _end_pending_login(self) -> None:
        if self._pending_login:
            self._pending_login = False
            self.pool.pending_logins[self.host] -= 1
            if not self.pool.pending_logins[self.host]:
                del self.pool.pending_logins[self.host]

    # -- Member interface (partypool.room) ----------------------------------

    def deliver(self, event: Event) -> None:
        if self.state == "chatting":
            self._write(event.wire)

    def disconnect(self, reason: str) -> None:
        if self._handshaking:
            return self._abort_handshake(reason)
        self._goodbye(reason)

    # -- output --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        backlog = self._backlog
        if backlog.paused:
            backlog.size += len(data)
            if backlog.size > self.pool.limits.max_pending:
                self._drop_slow_reader()
                return
        self.transport.write(data)

    def _reply(self, verb: str, *parts: str) -> None:
        self._write(format_line(verb, *parts))

    def _error(self, error: WireError) -> None:
        self._write(error_line(error.code, error.text))

    def _goodbye(
        self, reason: str, error: WireError | None = None, left: str | None = None
    ) -> None:
        """Send an optional ERR, then ``BYE reason``, and close; others see ``left``."""
        if self.state == "closed":
            return
        if self.pool.room.leave(self, left or reason):
            log.info("{name} left: {reason}", name=self.name, reason=left or reason)
        if error is not None:
            self._error(error)
        self._reply("BYE", reason)
        self.state = "closed"
        self._timers["close"] = self.pool.clock.callLater(
            CLOSE_GRACE, self.transport.abortConnection
        )
        self.transport.unregisterProducer()  # TLS sends close_notify only without one
        self.transport.loseConnection()

    def _abort_handshake(self, reason: str) -> None:
        """Close a peer that never finished TLS: it could not read a BYE, and
        the TLS layer would hold the connection open waiting for it to."""
        log.info(
            "closing {peer} mid-handshake: {reason}", peer=self.peer, reason=reason
        )
        self.state = "closed"
        self.transport.abortConnection()

    def _drop_slow_reader(self) -> None:
        log.info("dropping slow reader {peer}", peer=self.peer)
        self.pool.room.leave(self, "too slow")
        self.state = "closed"
        self.transport.abortConnection()

    # -- input ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
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
            if self.state == "closed":
                return
            if len(line) + 1 > max_line:
                self._line_too_long()
                continue
            self.lineReceived(line[:-1] if line.endswith(b"\r") else line)
        if len(self._buffer) >= max_line and self.state != "closed":
            self._buffer = b""
            self._discarding = True
            self._line_too_long()

    def _line_too_long(self) -> None:
        limit = self.pool.limits.max_line
        self._error(
            WireError("line-too-long", f"lines are at most {limit} bytes; discarded")
        )

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        now = self.pool.clock.seconds()
        self.last_heard = now
        if not self._bucket.take(now):
            self._rate_limited(now)
            return
        try:
            command = parse_line(line)
            self._dispatch(command.verb, command.argument)
        except WireError as e:
            self._error(e)
        except Exception:
            log.failure("error handling a line from {peer}", peer=self.peer)
            self._goodbye("internal error", left="lost")

    def _dispatch(self, verb: str, argument: str) -> None:
        allowed, code, text = _STATES[self.state]
        if verb not in allowed:
            if self.state == "challenge" and verb == "AUTH":
                return self._login_failed("AUTH sent twice")
            if code is None or (self.state == "naming" and verb in _AFTER_LOGIN):
                code, text = _AFTER_LOGIN[verb]
            raise WireError(code, text)
        getattr(self, "handle_" + verb.replace("-", "_"))(argument)

    def _rate_limited(self, now: float) -> None:
        limits = self.pool.limits
        self._drops.append(now)
        while self._drops[0] <= now - limits.flood_window:
            self._drops.popleft()
        if len(self._drops) >= limits.flood_drops:
            log.info("disconnecting flooder {peer}", peer=self.peer)
            self._goodbye("flooding")
        elif now - self._last_rate_error >= 1.0:
            self._last_rate_error = now
            self._error(
                WireError(
                    "rate-limited",
                    f"at most {limits.rate:g} lines per second; line dropped",
                )
            )

    # -- timers ---------------------------------------------------------------

    def _login_timed_out(self) -> None:
        del self._timers["login"]
        log.info("login timeout for {peer}", peer=self.peer)
        if self._handshaking:
            return self._abort_handshake("timeout")
        self._goodbye("timeout", error=WireError("timeout", "login took too long"))

    def _idle_check(self) -> None:
        """PING after ``idle`` s of silence; drop if nothing comes back within ``idle``.

        A line heard after our PING went out is the answer, however quickly it
        came: this check runs ``idle`` s after the PING, a little late, so
        comparing "silent for" with ``idle`` alone would drop a client that
        answered at once.
        """
        clock, idle = self.pool.clock, self.pool.limits.idle_ping
        now = clock.seconds()
        silent_for = now - self.last_heard
        answered = self._pinged_at is not None and self.last_heard >= self._pinged_at
        if silent_for < idle or answered:
            self._pinged_at = None
            delay = max(0.0, idle - silent_for)
        elif self._pinged_at is None:
            self._pinged_at = now
            self._reply("PING", secrets.token_hex(4))
            delay = idle
        else:
            del self._timers["idle"]
            if self._handshaking:
                return self._abort_handshake("timeout")
            self._goodbye("timeout")
            return
        self._timers["idle"] = clock.callLater(delay, self._idle_check)

    # -- login ----------------------------------------------------------------

    def handle_AUTH(self, argument: str) -> None:  # noqa: N802
        if self.pool.throttle.is_refused(self.host):
            error = WireError(
                "auth-throttled", "too many failed logins; try again in a minute"
            )
            self._goodbye("auth-throttled", error=error)
            return
        mechanism, _, payload = argument.partition(" ")
        if mechanism.upper() != SCRAM_MECHANISM:
            return self._login_failed("unsupported mechanism")
        self._exchange = self.pool.verifier.exchange()
        try:
            server_first = self._exchange.first(_unbase64(payload))
        except AuthFailed as e:
            return self._login_failed(str(e))
        self.state = "challenge"
        self._reply("AUTH-CHALLENGE", _base64(server_first))

    def handle_AUTH_RESPONSE(self, argument: str) -> None:  # noqa: N802
        try:
            server_final = self._exchange.final(_unbase64(argument))
        except AuthFailed as e:
            return self._login_failed(str(e))
        self._exchange = None
        self.state = "naming"
        log.info("login ok from {peer}", peer=self.peer)
        self._reply("AUTH-OK", _base64(server_final))

    def _login_failed(self, why: str) -> None:
        self.pool.throttle.failed(self.host)
        log.info("login failed from {peer}: {why}", peer=self.peer, why=why)
        self._goodbye(
            "auth-failed", error=WireError("auth-failed", "wrong passkey or bad login")
        )

    def handle_NICK(self, argument: str) -> None:  # noqa: N802
        try:
            name = self.pool.room.join(self, argument)
        except WireError as e:
            if e.code in ("server-full", "duplicate-ip"):
                self._goodbye(e.code, error=e)
                return
            raise
        self._end_pending_login()
        self._timers.pop("login").cancel()
        self.state = "chatting"
        log.info("{peer} is now {name}", peer=self.peer, name=name)
        self._reply("OK", "NICK", name)

    # -- chat -----------------------------------------------------------------

    def handle_SAY(self, argument: str) -> None:  # noqa: N802
        text = clean_text(argument, self.pool.limits.max_text)
        if self.pool.log_messages:
            log.info("<{name}> {text}", name=self.name, text=text)
        self.pool.room.say(self, text)

    def handle_ONLINE(self, argument: str) -> None:  # noqa: N802
        names = self.pool.room.names()
        self._reply("ONLINE", str(len(names)), *names)

    def handle_IP(self, argument: str) -> None:  # noqa: N802
        self._reply("IP", self.host)

    def handle_REQUEST(self, argument: str) -> None:  # noqa: N802
        text = clean_text(argument, self.pool.limits.max_request)
        d = self.pool.store.add_request(self.name, self.host, text)
        d.addCallbacks(self._request_stored, self._request_failed)

    def _request_stored(self, request_id: int) -> None:
        self.pool.room.stats.requests += 1
        log.info("request {id} stored from {name}", id=request_id, name=self.name)
        if self.state == "chatting":
            self._reply("OK", "REQUEST", str(request_id))

    def _request_failed(self, failure: Failure) -> None:
        log.failure("storing a request from {name}", failure, name=self.name)
        if self.state == "chatting":
            self._error(WireError("request-failed", "the request was not stored"))

    def handle_PING(self, argument: str) -> None:  # noqa: N802
        token = (scrub(argument),) if argument else ()
        self._reply("PONG", *token)

    def handle_PONG(self, argument: str) -> None:  # noqa: N802
        """Any line is a sign of life; a PONG needs nothing more."""

    def handle_QUIT(self, argument: str) -> None:  # noqa: N802
        reason = scrub(argument).strip()[:_QUIT_REASON_MAX]
        self._goodbye("quit", left=f"quit: {reason}" if reason else "quit")


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unbase64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthFailed("malformed base64") from None


class ChatFactory(ServerFactory):
    """Makes a `ChatProtocol` for each connection to the chat port."""

    noisy = False

    def __init__(self, pool: PartyPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: IAddress) -> ChatProtocol:  # noqa: N802
        protocol = ChatProtocol(self.pool)
        protocol.factory = self
        return protocol

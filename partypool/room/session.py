"""One user's protocol-v1 session, whatever carries its lines.

A `Session` is everything about a chat connection except the connection: the
states and the verbs each accepts, the SCRAM-SHA-256 login, the rate limit
and flood cut-off, the keepalive and login timers, admission and the count of
pending logins per address, and the ``BYE`` that ends it.  It is the room
`~partypool.room.room.Member` once named, and the `~partypool.room.pool.Connection`
in ``pool.connections`` from the start.

It reaches its carrier only through an `Outlet` (write bytes, close after
flushing, abort), and the carrier drives it through a handful of calls:
`Session.start`, `Session.line` (one line, without its ending),
`Session.line_too_long`, `Session.handshake_done`, `Session.too_slow` and
`Session.lost`.  So a front door — `partypool.doors.chat` for TCP and TLS, later a
WebSocket door or an IRC gateway — is a thin adapter: framing, flow control
and transport details only.
"""

from __future__ import annotations

import base64
import binascii
import collections
import secrets
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool.room.auth import SCRAM_MECHANISM, AuthFailed, ScramExchange
from partypool.room.pool import PartyPool
from partypool.room.room import Event
from partypool.room.store import TooManyRequests
from partypool.wire import (
    HISTORY_HEAD,
    ID_MAX,
    PROTOCOL_VERSION,
    WireError,
    ascii_upper,
    check_fits,
    clean_text,
    error_line,
    format_line,
    online_lines,
    parse_line,
    scrub,
    visible_text,
)

# The chat port's namespace: operators filter the log on it.
log = Logger(namespace="partypool.doors.chat")

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


class Outlet(Protocol):
    """What a `Session` needs of whatever carries its lines."""

    def write(self, data: bytes) -> None:
        """Send ``data`` (whole lines, each ending in CRLF), after anything
        gathered before it."""

    def gather(self, data: bytes) -> None:
        """Send room-event lines, perhaps a moment later together with others
        (`partypool.room.gather`); a carrier with nothing to gain writes them now."""

    def close(self) -> None:
        """Close once what was written has been sent (the carrier also drops
        anything of its own, such as a registered producer)."""

    def abort(self) -> None:
        """Close now, unsent data or not."""


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


class Session:
    """One user's protocol-v1 session, and the room member it becomes once named.

    ``host`` is the address the room admits or refuses, ``peer`` what the
    administrator sees (``host:port``); ``handshaking`` says the carrier is
    still negotiating TLS, so the peer could not read a ``BYE`` yet.
    """

    def __init__(
        self, pool: PartyPool, host: str, peer: str, outlet: Outlet, handshaking: bool
    ) -> None:
        self.pool = pool
        self.host = host
        self.peer = peer
        self.name: str | None = None
        self.state = "new"
        self._outlet = outlet
        self._handshaking = handshaking
        self._exchange: ScramExchange | None = None
        self._pending_login = False
        self._timers: dict[str, IDelayedCall] = {}
        self._pinged_at: float | None = None  # when our unanswered PING went out
        self._drops: collections.deque[float] | None = None  # at the first drop
        self._last_rate_error = float("-inf")
        self.since = self.last_heard = pool.clock.seconds()
        self._bucket = _TokenBucket(pool.limits.rate, pool.limits.burst, self.since)

    @property
    def closed(self) -> bool:
        """Whether the session has ended (the carrier stops feeding it lines)."""
        return self.state == "closed"

    # -- life (called by the carrier) ----------------------------------------

    def start(self) -> None:
        """Greet, then refuse or admit the peer and start the timers."""
        pool, clock = self.pool, self.pool.clock
        pool.connections.add(self)
        self.state = "login"
        self._write(format_line("HELLO", PROTOCOL_VERSION, pool.server_name))
        log.info("connect from {peer}", peer=self.peer)
        refusal = pool.room.admission_error(self.host)
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

    def handshake_done(self) -> None:
        """The carrier's TLS handshake completed: the peer can read a BYE now."""
        self._handshaking = False

    def too_slow(self) -> None:
        """The peer reads too slowly to ever see a BYE: leave and abort."""
        log.info("dropping slow reader {peer}", peer=self.peer)
        self.pool.room.leave(self, "too slow")
        self.state = "closed"
        self._outlet.abort()

    def lost(self) -> None:
        """The connection is gone, however it ended."""
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

    # -- Member interface (partypool.room.room) ----------------------------------

    def deliver(self, event: Event) -> None:
        if self.state == "chatting":
            self._outlet.gather(event.wire)

    def disconnect(self, reason: str) -> None:
        if self._handshaking:
            return self._abort_handshake(reason)
        self._goodbye(reason)

    # -- output --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._outlet.write(data)

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
            CLOSE_GRACE, self._outlet.abort
        )
        self._outlet.close()

    def _abort_handshake(self, reason: str) -> None:
        """Close a peer that never finished TLS: it could not read a BYE, and
        the TLS layer would hold the connection open waiting for it to."""
        log.info(
            "closing {peer} mid-handshake: {reason}", peer=self.peer, reason=reason
        )
        self.state = "closed"
        self._outlet.abort()

    # -- input ----------------------------------------------------------------

    def line_too_long(self) -> None:
        """The carrier discarded a line longer than ``limits.max_line``."""
        if self._admit():
            limit = self.pool.limits.max_line
            self._error(
                WireError(
                    "line-too-long", f"lines are at most {limit} bytes; discarded"
                )
            )

    def _admit(self) -> bool:
        """Count one received line: a sign of life, and a token from the bucket."""
        now = self.pool.clock.seconds()
        self.last_heard = now
        if self._bucket.take(now):
            return True
        self._rate_limited(now)
        return False

    def line(self, raw: bytes) -> None:
        """Handle one line from the peer, without its line ending."""
        if not self._admit():
            return
        try:
            command = parse_line(raw)
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
        if self._drops is None:  # an empty deque is 760 bytes: most never need one
            self._drops = collections.deque()
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

    def _throttled(self) -> bool:
        """Refuse an address with too many failed logins (checked at both steps,
        so logins started in parallel cannot all be tried)."""
        if not self.pool.throttle.is_refused(self.host):
            return False
        error = WireError(
            "auth-throttled", "too many failed logins; try again in a minute"
        )
        self._goodbye("auth-throttled", error=error)
        return True

    def handle_AUTH(self, argument: str) -> None:  # noqa: N802
        if self._throttled():
            return
        mechanism, _, payload = argument.partition(" ")
        if ascii_upper(mechanism) != SCRAM_MECHANISM:
            return self._login_failed("unsupported mechanism")
        self._exchange = self.pool.verifier.exchange()
        try:
            server_first = self._exchange.first(_unbase64(payload))
        except AuthFailed as e:
            return self._login_failed(str(e))
        challenge = format_line("AUTH-CHALLENGE", _base64(server_first))
        if len(challenge) > self.pool.limits.max_line:  # it repeats the client nonce
            return self._login_failed("client-first-message too long")
        self.state = "challenge"
        self._write(challenge)

    def handle_AUTH_RESPONSE(self, argument: str) -> None:  # noqa: N802
        if self._throttled():
            return
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
        check_fits(text, self.pool.limits.max_line, *HISTORY_HEAD, "CHAT", self.name)
        if self.pool.log_messages:
            log.info("<{name}> {text}", name=self.name, text=text)
        self.pool.room.say(self, text)

    def handle_ONLINE(self, argument: str) -> None:  # noqa: N802
        names = self.pool.room.names()
        self._write(b"".join(online_lines(names, self.pool.limits.max_line)))

    def handle_IP(self, argument: str) -> None:  # noqa: N802
        self._reply("IP", self.host)

    def handle_REQUEST(self, argument: str) -> None:  # noqa: N802
        limits = self.pool.limits
        text = clean_text(argument, limits.max_request)
        check_fits(text, limits.max_line, "REQUESTED", ID_MAX, self.name)
        d = self.pool.store.add_request(
            self.name, self.host, text, per_day=limits.max_requests_per_day
        )
        d.addCallbacks(self._request_stored, self._request_failed)

    def _request_stored(self, request_id: int) -> None:
        self.pool.room.stats.requests += 1
        log.info("request {id} stored from {name}", id=request_id, name=self.name)
        if self.state == "chatting":
            self._reply("OK", "REQUEST", str(request_id))

    def _request_failed(self, failure: Failure) -> None:
        """``request-failed`` either way: clients expect this code, and only
        this one, to answer a REQUEST after later lines (docs/protocol.md)."""
        if failure.check(TooManyRequests):
            log.info("request refused from {name}: daily limit", name=self.name)
            per_day = self.pool.limits.max_requests_per_day
            text = f"at most {per_day} requests a day; not stored, try again later"
        else:
            log.failure("storing a request from {name}", failure, name=self.name)
            text = "the request was not stored"
        if self.state == "chatting":
            self._error(WireError("request-failed", text))

    def handle_PING(self, argument: str) -> None:  # noqa: N802
        token = (scrub(argument),) if argument else ()
        self._reply("PONG", *token)

    def handle_PONG(self, argument: str) -> None:  # noqa: N802
        """Any line is a sign of life; a PONG needs nothing more."""

    def handle_QUIT(self, argument: str) -> None:  # noqa: N802
        reason = visible_text(argument)[:_QUIT_REASON_MAX]
        self._goodbye("quit", left=f"quit: {reason}" if reason else "quit")


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unbase64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthFailed("malformed base64") from None

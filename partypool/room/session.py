"""One user's session in the room, whatever door they came in by.

A `Session` holds every rule a front door shares: admission and the count of
connections not logged in yet (`~partypool.room.pool.Unauthenticated`), the
login throttle and failure budget, the SCRAM-SHA-256 exchange (for chat, or
for root with the root password), the rate limit and flood cut-off, the
login and keepalive timers, room membership, mutes, private messages, root's
commands, and the goodbye that ends it.  Every per-address rule counts an
address group (an IPv6 /64); every elapsed time is read from the pool's
steady clock (`PartyPool.now`), which a wall-clock step cannot turn
negative.  However a session ends, its timers stop then, so the goodbye is
the last thing said.  It is the room `~partypool.room.room.Member` once
named, and the
`~partypool.room.pool.Connection` in ``pool.connections`` from the start.

It knows no wire.  A door drives it with plain calls — `Session.start`,
`Session.admit_line` for each line received, `Session.scram_first` /
`Session.scram_final` (or `Session.login_secret`), `Session.join`,
`Session.say`, `Session.private`, `Session.names`, `Session.history`,
`Session.request`, `Session.admin`, `Session.quit`, and the carrier's
`Session.handshake_done`,
`Session.too_slow` and `Session.lost` — and a refusal it may answer comes
back as a `~partypool.wire.WireError` (one error code; the door words it).
What the session must say on its own (room events, a keepalive ping, an
error such as ``rate-limited``, the last words before closing) it says
through the door's `Door` methods, as objects, never as lines: so the v1
dialect (`partypool.doors.v1`, over TCP, TLS or WebSocket) and an IRC
gateway format them each their own way, and neither copies a rule.
"""

from __future__ import annotations

import collections
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool.room import room as events
from partypool.room.auth import (
    ROOT_USERNAME,
    SCRAM_MECHANISM,
    SCRAM_USERNAME,
    AuthFailed,
    ScramExchange,
)
from partypool.room.history import DEFAULT_COUNT as DEFAULT_HISTORY
from partypool.room.history import Entry
from partypool.room.pool import PartyPool, RootCommands
from partypool.room.room import Event
from partypool.room.store import TooManyRequests
from partypool.wire import (
    HISTORY_HEAD,
    ID_MAX,
    WireError,
    check_fits,
    clean_text,
    scrub,
    split_to_fit,
    visible_text,
)

if TYPE_CHECKING:
    from partypool.admin.commands import Result

# The states, in order; a door decides which of its verbs each one accepts.
NEW, LOGIN, CHALLENGE, NAMING, CHATTING, CLOSED = (
    "new",  # not started
    "login",  # greeted, not logged in
    "challenge",  # SCRAM under way
    "naming",  # logged in, no name yet
    "chatting",  # in the room
    "closed",  # ended; the door feeds it nothing more
)
QUIT_REASON_MAX = 200
# What a door without a terminal says to root's ``manhole``.
NO_TERMINAL = "manhole needs a terminal: use the SSH admin port (ssh -t)"
# After the goodbye, how long a peer may take to let the connection close (a
# TLS peer that never finished its handshake would otherwise hold it open).
CLOSE_GRACE = 10.0


def quit_reason(reason: str) -> str:
    """A peer's quit reason as the room keeps it: `visible_text`, at most
    `QUIT_REASON_MAX` characters (a door echoing it to its peer uses this too)."""
    return visible_text(reason)[:QUIT_REASON_MAX]


class Door(Protocol):
    """What a `Session` needs of the door that carries it: a dialect and its
    carrier together (the v1 dialect over TCP, say, or an IRC gateway)."""

    def deliver(self, event: Event) -> None:
        """Send one room event (the session is in the room); must not block."""

    def error(self, error: WireError) -> None:
        """Tell the peer of an error no command of theirs is waiting on
        (``rate-limited``, ``line-too-long``, ``request-failed``)."""

    def ping(self, token: str) -> None:
        """Send a keepalive ping the peer must answer (any line will do)."""

    def goodbye(self, reason: str, error: WireError | None) -> None:
        """Send the last words: ``error`` if any, then that the server closes
        for ``reason``.  `close` follows at once."""

    def close(self) -> None:
        """Close once what was sent has gone."""

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
    """One user's session, and the room member it becomes once named.

    ``host`` is the address the room admits or refuses, ``peer`` what the
    administrator sees (``host:port``); ``handshaking`` says the carrier is
    still negotiating TLS, so the peer could not read a goodbye yet.  ``log``
    is the door's logger: operators filter each door's log on its namespace;
    ``door_name`` is the door's name for the operator (``IRC gateway``),
    which the log of a root login and of root's commands shows.
    """

    def __init__(
        self,
        pool: PartyPool,
        host: str,
        peer: str,
        door: Door,
        *,
        handshaking: bool,
        log: Logger,
        door_name: str,
    ) -> None:
        self.pool = pool
        self.host = host
        self.peer = peer
        self.name: str | None = None
        self.state = NEW
        self.is_root = False  # logged in with the root password
        self.log = log
        self.door_name = door_name
        self._door = door
        self._handshaking = handshaking
        self._exchange: ScramExchange | None = None
        self._held_refusal: WireError | None = None  # told at the first login step
        self._refusal: WireError | None = None  # told once the handshake is done
        self._commands: RootCommands | None = None
        self._admin_queue: Deferred[None] = defer.succeed(None)
        self._timers: dict[str, IDelayedCall] = {}
        self._pinged_at: float | None = None  # when our unanswered ping went out
        self._drops: collections.deque[float] | None = None  # at the first drop
        self._last_rate_error = float("-inf")
        self.since = self.last_heard = pool.now()
        self._bucket = _TokenBucket(pool.limits.rate, pool.limits.burst, self.since)

    @property
    def closed(self) -> bool:
        """Whether the session has ended (the door stops feeding it lines)."""
        return self.state == CLOSED

    # -- life (called by the door) ----------------------------------------------

    def start(self) -> bool:
        """Refuse or admit the peer and start the timers; False if refused.
        A door greets its peer first, if its dialect greets.

        A refusal is said at once, or, to a TLS peer still in its handshake
        (it could not read it yet), once the handshake is done, if its
        address may hold one such connection (`Unauthenticated`); else the
        connection is closed at once, unanswered.

        Root is exempt from the cap and the one-session-per-address rule,
        and only the login says who is root: so when the chat port takes
        root logins, a connection refused for those two reasons is told so
        at its first login step instead, unless that step logs in as root.
        """
        pool = self.pool
        pool.connections.add(self)
        self.state = LOGIN
        self.log.info("connect from {peer}", peer=self.peer)
        refusal = pool.room.admission_error(self.host)
        if (
            refusal is not None
            and refusal.code in ("server-full", "duplicate-ip")
            and pool.root_verifier is not None
        ):
            self._held_refusal, refusal = refusal, None
        if refusal is None:
            if pool.unauthenticated.admit(self, self.host) is None:
                self._start_timers()
                return True
            refusal = WireError(
                "auth-throttled", "too many pending logins from your address"
            )
        self.log.info("refused {peer}: {code}", peer=self.peer, code=refusal.code)
        if not self._handshaking:
            self.goodbye(refusal.code, error=refusal)
        elif pool.unauthenticated.admit(self, self.host, refused=True) is None:
            self._refusal = refusal
            self._timers["login"] = pool.clock.callLater(
                pool.limits.login_timeout, self._login_timed_out
            )
        else:
            self._abort_handshake(refusal.code)
        return False

    def _start_timers(self) -> None:
        clock, limits = self.pool.clock, self.pool.limits
        self._timers["login"] = clock.callLater(
            limits.login_timeout, self._login_timed_out
        )
        self._timers["idle"] = clock.callLater(limits.idle_ping, self._idle_check)

    def handshake_done(self) -> None:
        """The carrier's TLS handshake completed: the peer can read a goodbye
        now, and a refusal waiting for that is said."""
        self._handshaking = False
        if self._refusal is not None:
            # On the next turn: a TLS carrier sends what was written during
            # the handshake (the greeting) only once this call has returned.
            self._timers["refusal"] = self.pool.clock.callLater(0, self._refuse_now)

    def _refuse_now(self) -> None:
        del self._timers["refusal"]
        self.goodbye(self._refusal.code, error=self._refusal)

    def too_slow(self) -> None:
        """The peer reads too slowly to ever see a goodbye: leave and abort
        (once: a reply of many lines may pass the limit on each of them)."""
        if self.closed:
            return
        self.log.info("dropping slow reader {peer}", peer=self.peer)
        self.pool.room.leave(self, "too slow")
        self._end()
        self._door.abort()

    def lost(self) -> None:
        """The connection is gone, however it ended."""
        self._end()  # the close grace too
        self.pool.connections.discard(self)
        if self.pool.room.leave(self, "lost"):
            self.log.info("{name} lost ({peer})", name=self.name, peer=self.peer)

    def _end(self) -> None:
        """The session is over, however it ended: nothing more is said, so no
        timer of it may run on, and it is no longer logging in."""
        self.state = CLOSED
        vars(self).pop("deliver", None)  # the room's events stop here
        self._stop_timers()
        self.pool.unauthenticated.release(self)

    def _stop_timers(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _end_login(self) -> None:
        """Logged in for good: no longer unauthenticated, no login timeout."""
        self.pool.unauthenticated.release(self)
        timer = self._timers.pop("login", None)
        if timer is not None:
            timer.cancel()

    def goodbye(
        self, reason: str, error: WireError | None = None, left: str | None = None
    ) -> None:
        """Say ``error`` (if any) and goodbye for ``reason``, then close; the
        others in the room see ``left`` (``reason`` if not given)."""
        if self.state == CLOSED:
            return
        if self.pool.room.leave(self, left or reason):
            self.log.info(
                "{name} left: {reason}", name=self.name, reason=left or reason
            )
        self._door.goodbye(reason, error)
        self._end()
        self._timers["close"] = self.pool.clock.callLater(CLOSE_GRACE, self._door.abort)
        self._door.close()

    def internal_error(self) -> None:
        """The door failed handling a line (logged by the caller): end this
        session only; the others see it as lost."""
        self.goodbye("internal error", left="lost")

    # -- Member interface (partypool.room.room) ---------------------------------

    def deliver(self, event: Event) -> None:
        """Nothing: only a session in the room gets events, and `join` makes
        the door's own ``deliver`` this session's until `_end` — the room
        calls it for every member and every event, so no call of ours stands
        between (a member gone mid-broadcast still meets this one)."""

    def disconnect(self, reason: str) -> None:
        if self._handshaking:
            return self._abort_handshake(reason)
        self.goodbye(reason)

    def _abort_handshake(self, reason: str) -> None:
        """Close a peer that never finished TLS: it could not read a goodbye,
        and the TLS layer would hold the connection open waiting for it to."""
        self.log.info(
            "closing {peer} mid-handshake: {reason}", peer=self.peer, reason=reason
        )
        self._end()
        self._door.abort()

    # -- input: every line received counts ---------------------------------------

    def admit_line(self) -> bool:
        """Count one received line: a sign of life, and a token from the rate
        limit's bucket.  False: drop the line (the session has said why, or
        has ended the session of a flooder, or it is refused and about to
        say so)."""
        if self._refusal is not None:
            return False
        now = self.pool.now()
        self.last_heard = now
        if self._bucket.take(now):
            return True
        self._rate_limited(now)
        return False

    def line_too_long(self) -> None:
        """The door discarded a line longer than ``limits.max_line``."""
        if self.admit_line():
            limit = self.pool.limits.max_line
            self._door.error(
                WireError(
                    "line-too-long", f"lines are at most {limit} bytes; discarded"
                )
            )

    def _rate_limited(self, now: float) -> None:
        limits = self.pool.limits
        if self._drops is None:  # an empty deque is 760 bytes: most never need one
            self._drops = collections.deque()
        self._drops.append(now)
        while self._drops[0] <= now - limits.flood_window:
            self._drops.popleft()
        if len(self._drops) >= limits.flood_drops:
            self.log.info("disconnecting flooder {peer}", peer=self.peer)
            self.goodbye("flooding")
        elif now - self._last_rate_error >= 1.0:
            self._last_rate_error = now
            self._door.error(
                WireError(
                    "rate-limited",
                    f"at most {limits.rate:g} lines per second; line dropped",
                )
            )

    # -- timers -------------------------------------------------------------------

    def _login_timed_out(self) -> None:
        del self._timers["login"]
        self.log.info("login timeout for {peer}", peer=self.peer)
        if self._handshaking:
            return self._abort_handshake("timeout")
        self.goodbye("timeout", error=WireError("timeout", "login took too long"))

    def _idle_check(self) -> None:
        """Ping after ``idle`` s of silence; drop if nothing comes back within ``idle``.

        A line heard after our ping went out is the answer, however quickly it
        came: this check runs ``idle`` s after the ping, a little late, so
        comparing "silent for" with ``idle`` alone would drop a client that
        answered at once.
        """
        clock, idle = self.pool.clock, self.pool.limits.idle_ping
        now = self.pool.now()
        silent_for = now - self.last_heard
        answered = self._pinged_at is not None and self.last_heard >= self._pinged_at
        if silent_for < idle or answered:
            self._pinged_at = None
            delay = max(0.0, idle - silent_for)
        elif self._pinged_at is None:
            self._pinged_at = now
            self._door.ping(secrets.token_hex(4))
            delay = idle
        else:
            del self._timers["idle"]
            if self._handshaking:
                return self._abort_handshake("timeout")
            self.goodbye("timeout")
            return
        self._timers["idle"] = clock.callLater(delay, self._idle_check)

    # -- login --------------------------------------------------------------------

    def _throttled(self) -> bool:
        """Refuse an address with too many failed logins, and, while the
        failures of all addresses have spent the budget, any address that has
        not logged in lately (checked at both steps, so logins started in
        parallel cannot all be tried)."""
        pool = self.pool
        if pool.throttle.is_refused(self.host):
            text = "too many failed logins; try again in a minute"
        elif (pause := pool.budget.paused()) and not pool.throttle.trusted(self.host):
            text = (
                "too many failed logins on this server; "
                f"try again in {math.ceil(pause)} s"
            )
        else:
            return False
        self.goodbye("auth-throttled", error=WireError("auth-throttled", text))
        return True

    def scram_first(
        self,
        client_first: str,
        mechanism: str = SCRAM_MECHANISM,
        channel_binding: bytes | None = None,
    ) -> str | None:
        """Begin a SCRAM login (SCRAM-SHA-256, or -PLUS bound to the TLS
        connection's C{channel_binding} data): the server-first-message, or
        None if the login failed and the session has ended."""
        if self._throttled():
            return None
        self._exchange = ScramExchange(
            self.pool.verifier,
            self.pool.root_verifier,
            mechanism=mechanism,
            channel_binding=channel_binding,
        )
        try:
            server_first = self._exchange.first(client_first)
        except AuthFailed as e:
            return self.login_failed(str(e))
        if self._refused_as(self._exchange.username):
            return None
        self.state = CHALLENGE
        return server_first

    def _refused_as(self, username: str) -> bool:
        """Tell a connection that `start` let in only in case it was root, now
        that it says who it is, that it is still refused (and end it)."""
        held, self._held_refusal = self._held_refusal, None
        if held is None or username == ROOT_USERNAME:
            return False
        refusal = self.pool.room.admission_error(self.host)  # still?
        if refusal is None:
            return False
        self.log.info("refused {peer}: {code}", peer=self.peer, code=refusal.code)
        self.goodbye(refusal.code, error=refusal)
        return True

    def scram_final(self, client_final: str) -> str | None:
        """Finish the login: the server-final-message (the peer checks the
        server's signature in it), or None if the login failed and the
        session has ended."""
        if self._throttled():
            return None
        try:
            server_final = self._exchange.final(client_final)
        except AuthFailed as e:
            return self.login_failed(str(e))
        self._logged_in(self._exchange.username)
        return server_final

    def login_secret(self, username: str, secret: str) -> Deferred[bool]:
        """Log in with the secret itself, for a door whose login sends it
        (IRC's ``PASS`` and SASL PLAIN); ``username`` as in SCRAM (``chat``
        or ``root``).  The check runs off the reactor; fires True once
        logged in, False if the login failed and the session has ended.
        """
        if self._throttled():
            return defer.succeed(False)
        pool = self.pool
        verifiers = {SCRAM_USERNAME: pool.verifier, ROOT_USERNAME: pool.root_verifier}
        verifier = verifiers.get(username)
        if verifier is None:
            self.login_failed("unknown user")
            return defer.succeed(False)
        if self._refused_as(username):
            return defer.succeed(False)
        self.state = CHALLENGE

        def checked(matches: bool) -> bool:
            if self.closed:
                return False
            if not matches:
                self.login_failed("wrong secret")
                return False
            self._logged_in(username)
            return True

        return pool.defer_to_thread(verifier.matches, secret).addCallback(checked)

    def _logged_in(self, username: str) -> None:
        self.is_root = username == ROOT_USERNAME
        self._exchange = None
        self.state = NAMING
        self.pool.throttle.succeeded(self.host)
        if self.is_root:  # logged in for good: root need not join the room
            self._end_login()
            self.log.warn(
                "root logged in on the {door} from {peer}",
                door=self.door_name,
                peer=self.peer,
            )
        else:
            self.log.info("login ok from {peer}", peer=self.peer)

    def login_failed(self, why: str) -> None:
        """Count a failed login against the address and end the session (a
        door calls it for a login its dialect cannot even start, such as an
        unknown mechanism or a payload it cannot decode).  An address already
        refused is told so, whatever it sent."""
        if self._throttled():
            return
        self.pool.throttle.failed(self.host)
        self.pool.budget.failed()
        self.log.info("login failed from {peer}: {why}", peer=self.peer, why=why)
        self.goodbye(
            "auth-failed", error=WireError("auth-failed", "wrong passkey or bad login")
        )

    # -- the room ---------------------------------------------------------------

    def join(self, requested: str) -> str | None:
        """Enter the room under ``requested``: the name as others see it.

        Raises `WireError` for a name the peer may replace (``nick-invalid``,
        ``nick-taken``, ``banned``); returns None if the room is full or the
        address already has a session, and the session has ended.  A root
        session joins as ``root`` and only so: there is one root seat, and
        no other name could cure its being taken, so a root session that
        finds root in the room (come by any door) is told so and ended too.
        """
        room = self.pool.room
        try:
            name = (
                room.join_root(self, requested)
                if self.is_root
                else room.join(self, requested)
            )
        except WireError as e:
            if e.code in ("server-full", "duplicate-ip") or (
                self.is_root and e.code == "nick-taken"
            ):
                self.log.info("refused {peer}: {text}", peer=self.peer, text=e.text)
                self.goodbye(e.code, error=e)
                return None
            raise
        self._end_login()
        self.state = CHATTING
        self.deliver = self._door.deliver
        self.log.info("{peer} is now {name}", peer=self.peer, name=name)
        return name

    def say(self, text: str) -> None:
        """Say ``text`` to the room (scrubbed and checked here)."""
        self._check_not_muted()
        limits = self.pool.limits
        text = clean_text(text, limits.max_text)
        check_fits(text, limits.max_line, *HISTORY_HEAD, "CHAT", self.name)
        if self.pool.log_messages:
            self.log.info("<{name}> {text}", name=self.name, text=text)
        self.pool.room.say(self, text)

    def private(self, target: str, text: str) -> str:
        """Say ``text`` to ``target`` alone; return the name as the room spells it.

        Never kept, and logged only with ``--log-messages``.
        """
        self._check_not_muted()
        limits = self.pool.limits
        text = clean_text(text, limits.max_text)
        check_fits(text, limits.max_line, "PRIVATE", self.name)
        member = self.pool.room.by_name(target)
        if member is None:
            raise WireError("no-such-user", f"no user named {scrub(target)[:40]}")
        if self.pool.log_messages:
            self.log.info(
                "<{name} to {target}> {text}",
                name=self.name,
                target=member.name,
                text=text,
            )
        self.pool.room.send_to([member], events.private(self.name, text))
        return member.name

    def _check_not_muted(self) -> None:
        remaining = self.pool.mutes.remaining(self.name, self.host)
        if remaining is None:
            return
        if math.isinf(remaining):
            raise WireError("muted", "you are muted until the administrator lifts it")
        raise WireError("muted", f"you are muted for another {math.ceil(remaining)} s")

    def history(self, count: int | None = None) -> list[Entry]:
        """The room's latest messages, oldest first: ``count`` of them (a
        default without), never more than the server keeps."""
        history = self.pool.history
        if history is None:
            return []
        wanted = DEFAULT_HISTORY if count is None else count
        return history.recent(min(wanted, history.keep))

    def names(self) -> list[str]:
        """Who is in the room, sorted as names compare."""
        return self.pool.room.names()

    def request(self, text: str) -> Deferred[int]:
        """File a request for the operator: fires with its id once stored,
        or fails with ``WireError("request-failed")``."""
        limits = self.pool.limits
        text = clean_text(text, limits.max_request)
        check_fits(text, limits.max_line, "REQUESTED", ID_MAX, self.name)
        d = self.pool.store.add_request(
            self.name, self.host, text, per_day=limits.max_requests_per_day
        )
        d.addCallbacks(self._request_stored, self._request_failed, (text,))
        return d

    def _request_stored(self, request_id: int, text: str) -> int:
        room = self.pool.room
        room.stats.requests += 1
        self.log.info("request {id} stored from {name}", id=request_id, name=self.name)
        if room.root is not None:
            room.send_to([room.root], events.requested(request_id, self.name, text))
        return request_id

    def _request_failed(self, failure: Failure) -> None:
        """``request-failed`` either way: clients expect this code, and only
        this one, to answer a request after later lines (docs/protocol.md)."""
        if failure.check(TooManyRequests):
            self.log.info("request refused from {name}: daily limit", name=self.name)
            per_day = self.pool.limits.max_requests_per_day
            text = f"at most {per_day} requests a day; not stored, try again later"
        else:
            self.log.failure("storing a request from {name}", failure, name=self.name)
            text = "the request was not stored"
        raise WireError("request-failed", text)

    def admin(self, line: str, answer: Callable[[Result], None]) -> None:
        """Run root's command ``line`` with the admin port's executor, and
        call ``answer`` with its `~partypool.admin.commands.Result` (unless
        the session has ended by then).

        Commands run one at a time, in order.  ``manhole`` needs a terminal,
        so it says so; ``exit`` ends the session after its answer.  Raises
        ``WireError("forbidden")`` for anyone but root.
        """
        if not self.is_root or self.pool.root_commands is None:
            raise WireError("forbidden", "only root may run admin commands")
        if self._commands is None:
            self._commands = self.pool.root_commands(self.peer, self.door_name)
        commands = self._commands

        def run(_: object) -> Deferred:
            return commands.run(line).addCallback(done)

        def done(result: Result) -> None:
            if self.closed:
                return
            if result.action == "manhole":
                result = attrs.evolve(result, output=NO_TERMINAL, status=1, action=None)
            answer(result)
            if result.action == "exit":
                self.quit()

        self._admin_queue.addCallback(run).addErrback(
            lambda f: self.log.failure("root command {line!r}", f, line=line)
        )

    def quit(self, reason: str = "") -> None:
        """Leave at the peer's wish; the others see the reason (scrubbed, cut short)."""
        reason = quit_reason(reason)
        if self.name is not None:  # others get "LEFT <name> quit: <reason>"
            max_line = self.pool.limits.max_line
            reason = split_to_fit(reason, max_line, "LEFT", self.name, "quit:")[0]
        self.goodbye("quit", left=f"quit: {reason}" if reason else "quit")

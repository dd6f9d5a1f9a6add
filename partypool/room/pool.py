"""The running Party Pool, free of any transport.

`PartyPool` bundles what every front door shares — the room, the passkey
verifier (and root's, for root logins on the chat port), the login throttle,
the connections not logged in yet, the mutes, the store, the limits and the
clock — and owns server-wide actions such as the shutdown countdown.
`make_server` builds it
from explicit keyword arguments so tests need no command-line options.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol

import attrs
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger

from partypool.room import room as events
from partypool.room.addresses import address_group, normal_address
from partypool.room.auth import ChatVerifier, FailureBudget, LoginThrottle
from partypool.room.clock import SteadyClock
from partypool.room.gather import Gatherer
from partypool.room.history import Entry, History, fitted
from partypool.room.mutes import Mutes
from partypool.room.room import Room
from partypool.room.store import Ban, Store

log = Logger(namespace="partypool.room.pool")

# Seconds-left marks at which a pending shutdown is announced again.
COUNTDOWN_MARKS = (60, 30, 10, 5, 3, 2, 1)
# The NOTICE everyone gets when the administrator cancels a pending shutdown.
SHUTDOWN_CANCELLED = "the shutdown is cancelled: the server stays up"


@attrs.frozen
class Limits:
    """Every per-connection limit, each an operator option (see docs/protocol.md)."""

    max_line: int = 4096
    max_text: int = 2000
    max_request: int = 1000
    max_requests_per_day: int = 20
    login_timeout: float = 30.0
    idle_ping: float = 60.0
    rate: float = 5.0
    burst: int = 10
    flood_drops: int = 50
    flood_window: float = 10.0
    max_pending: int = 1 << 20
    max_pending_logins: int = 10
    max_unauthenticated: int = 100
    login_failures: int = 5
    login_window: float = 60.0
    login_penalty: float = 60.0
    login_budget: int = 20
    write_rate: float = 10_000.0
    max_hold: float = 0.1


class Connection(Protocol):
    """Any open client connection, named or not."""

    def disconnect(self, reason: str) -> None: ...


class RootCommands(Protocol):
    """The admin command executor (`partypool.admin.commands.AdminCommands`)."""

    def run(self, line: str) -> Deferred: ...


def host_and_peer(address: IAddress) -> tuple[str, str]:
    """The host as the server sees it, and ``host:port`` for the administrator.

    Every front door names its connections this way, whatever the transport,
    with the host in `normal_address` form (an address that is no IP, such
    as a test's, is kept as it is).
    """
    host = getattr(address, "host", None)
    if host is None:
        return str(address), str(address)
    with contextlib.suppress(ValueError):
        host = normal_address(host)
    return host, f"{host}:{address.port}"


# Why a connection is closed to make room for a newer one (`Unauthenticated`).
MAKE_ROOM = "too many connections not logged in"


@attrs.define(eq=False)
class Unauthenticated:
    """One port's connections that have not logged in yet, per address and in all.

    A flood of connections that never log in must not use up the process's
    file descriptors.  Past ``per_address`` from one address group
    (`address_group`: an IPv6 /64), a new one is refused (closed at once).
    Past ``total`` from all addresses, room is made: the oldest connection of
    the group holding the most is told to go (``disconnect(MAKE_ROOM)``).
    Refusing the newcomer instead would let silent connections from a few
    dozen addresses lock everyone else out, while a real login finishes long
    before it becomes the oldest of the busiest address.  Each port has its
    own count (`PartyPool.new_unauthenticated`; the chat doors share
    ``PartyPool.unauthenticated``: every `~partypool.room.session.Session`
    until it is named, and the web door's HTTP connections until they become
    WebSockets), so a flood on the chat port cannot lock root out of the
    admin port.

    A door may also count, per group, one connection it has refused but
    cannot tell why yet (a TLS peer still in its handshake): ``refused``.
    """

    per_address: int
    total: int
    _groups: dict[str, dict[Connection, bool]] = attrs.Factory(dict)  # -> refused?
    _group_of: dict[Connection, str] = attrs.Factory(dict)

    def admit(
        self, connection: Connection, host: str, refused: bool = False
    ) -> str | None:
        """Count ``connection`` from ``host``; or, counting nothing, say why not.

        If the port is full, the oldest connection of the busiest address is
        told to go (``disconnect``) and no longer counts.
        """
        group = address_group(host)
        held = self._groups.get(group, {})
        if refused and any(held.values()):
            return "a refused connection from it is waiting already"
        pending = sum(not r for r in held.values())
        if not refused and pending >= self.per_address:
            return f"{pending} connections from it not logged in"
        if len(self) >= self.total:
            self._make_room()
        self._groups.setdefault(group, {})[connection] = refused
        self._group_of[connection] = group
        return None

    def release(self, connection: Connection) -> None:
        """``connection`` logged in or went away (again: no harm)."""
        group = self._group_of.pop(connection, None)
        if group is None:
            return
        held = self._groups[group]
        del held[connection]
        if not held:
            del self._groups[group]

    def count(self, host: str) -> int:
        """Connections counted for ``host``'s address group."""
        return len(self._groups.get(address_group(host), {}))

    def __len__(self) -> int:
        return len(self._group_of)

    def _make_room(self) -> None:
        victim = next(iter(max(self._groups.values(), key=len)))
        self.release(victim)
        victim.disconnect(MAKE_ROOM)


@attrs.define(eq=False)
class Countdown:
    """A scheduled shutdown: when it ends, and the next announcement."""

    ends_at: float
    message: str
    call: IDelayedCall


@attrs.define(eq=False)
class PartyPool:
    room: Room
    verifier: ChatVerifier
    store: Store
    clock: IReactorTime
    server_name: str
    limits: Limits = Limits()
    log_messages: bool = False
    stop_server: Callable[[], object] = lambda: None
    # Root on the chat doors: the root password's SCRAM verifier (None: no
    # root logins there), and what runs root's commands, given the peer and
    # the name of the door it came by (``IRC gateway``), for the log.
    root_verifier: ChatVerifier | None = None
    root_commands: Callable[[str, str], RootCommands] | None = None
    # Runs a slow check (a password's PBKDF2) off the reactor.
    defer_to_thread: Callable[..., Deferred] = threads.deferToThread
    started: float = attrs.field(init=False)
    throttle: LoginThrottle = attrs.field(init=False)  # the chat doors'
    budget: FailureBudget = attrs.field(init=False)  # the chat doors'
    mutes: Mutes = attrs.field(init=False)
    history: History | None = None  # None: the room keeps no history
    gatherer: Gatherer = attrs.field(init=False)  # every door's room-event rounds
    connections: set[Connection] = attrs.Factory(set)
    unauthenticated: Unauthenticated = attrs.field(init=False)  # the chat doors'
    countdown: Countdown | None = None
    _steady: SteadyClock = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._steady = SteadyClock(self.clock)
        self.started = self.now()
        self.throttle = self.new_throttle()
        self.budget = self.new_budget()
        self.mutes = Mutes(self._steady)
        self.gatherer = Gatherer(
            self._steady, self.limits.write_rate, self.limits.max_hold
        )
        self.unauthenticated = self.new_unauthenticated()

    def now(self) -> float:
        """Seconds for measuring time: limits, deadlines, uptime.

        ``clock.seconds()`` that never go back (`partypool.room.clock`), so a
        wall clock stepped back cannot make an elapsed time negative.
        """
        return self._steady.seconds()

    def new_throttle(self) -> LoginThrottle:
        """A login throttle with the operator's policy (each port has its own)."""
        limits = self.limits
        return LoginThrottle(
            self._steady,
            max_failures=limits.login_failures,
            window=limits.login_window,
            penalty=limits.login_penalty,
        )

    def new_budget(self) -> FailureBudget:
        """A budget of failed logins from all addresses, with the operator's
        policy (each port has its own)."""
        limits = self.limits
        return FailureBudget(
            self._steady,
            limit=limits.login_budget,
            window=limits.login_window,
            max_backoff=limits.login_penalty,
        )

    def new_unauthenticated(self) -> Unauthenticated:
        """A count of a port's connections not logged in yet, with the operator's
        caps (``--max-pending-logins`` per address, ``--max-unauthenticated``)."""
        limits = self.limits
        return Unauthenticated(limits.max_pending_logins, limits.max_unauthenticated)

    def schedule_shutdown(self, seconds: int, message: str) -> None:
        """Announce ``SHUTDOWN`` now and at each mark, then say BYE and stop."""
        self._stop_countdown()
        self.countdown = Countdown(self.now() + seconds, message, None)
        log.info("shutdown in {seconds} s: {message}", seconds=seconds, message=message)
        self._announce(seconds)

    def _announce(self, left: int) -> None:
        countdown = self.countdown
        if left <= 0:
            self.countdown = None
            self.close_everyone(countdown.message)
            self.stop_server()
            return
        self.room.broadcast(events.shutdown(left, countdown.message))
        later = [mark for mark in COUNTDOWN_MARKS if mark < left]
        next_left = later[0] if later else 0
        countdown.call = self.clock.callLater(
            left - next_left, self._announce, next_left
        )

    def cancel_shutdown(self) -> bool:
        """Stop a pending shutdown and tell everyone (`SHUTDOWN_CANCELLED`)."""
        if not self._stop_countdown():
            return False
        log.info("shutdown cancelled")
        self.room.broadcast(events.notice(SHUTDOWN_CANCELLED))
        return True

    def _stop_countdown(self) -> bool:
        if self.countdown is None:
            return False
        self.countdown.call.cancel()
        self.countdown = None
        return True

    def close_everyone(self, reason: str) -> None:
        """Say ``BYE reason`` to every connection, named or not, and close them."""
        for connection in list(self.connections):
            connection.disconnect(reason)


def make_server(
    *,
    verifier: ChatVerifier,
    store: Store,
    clock: IReactorTime,
    server_name: str,
    max_clients: int = 25,
    allow_same_ip: bool = False,
    limits: Limits = Limits(),
    log_messages: bool = False,
    stop_server: Callable[[], object] = lambda: None,
    bans: Iterable[Ban] = (),
    root_verifier: ChatVerifier | None = None,
    history: int = 200,
    history_days: float = 7.0,
    history_kept: tuple[Iterable[Entry], int] = ((), 0),
) -> PartyPool:
    """Build the core, with ``bans`` (from the store) in force.

    The room keeps its last ``history`` messages (0: none) for
    ``history_days`` days; ``history_kept`` is what the store kept before,
    and the last id it gave (`partypool.room.store.load_history`), each
    entry cut to fit ``limits.max_line`` if it was kept under a larger one
    (`partypool.room.history.fitted`).
    """
    room = Room(max_members=max_clients, allow_same_ip=allow_same_ip)
    for ban in bans:
        if ban.kind == "name":
            room.banned_names.add(ban.value)
            continue
        try:
            room.banned_hosts.add(ban.value)
        except ValueError as e:  # stored by a server that let it through
            log.warn(
                "not applying the stored ban of ip {value}: {why}; "
                "unban -ip {value} removes it",
                value=ban.value,
                why=e,
            )
    if history:
        kept, last_id = history_kept
        entries = (fitted(entry, limits.max_line) for entry in kept)
        room.history = History(store, clock, history, history_days, entries, last_id)
    return PartyPool(
        room=room,
        verifier=verifier,
        store=store,
        clock=clock,
        server_name=server_name,
        limits=limits,
        log_messages=log_messages,
        stop_server=stop_server,
        root_verifier=root_verifier,
        history=room.history,
    )

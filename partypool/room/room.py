"""The room: who is here under which name, and delivery of events to them.

The room knows no sockets.  A member is anything with the small `Member`
interface, so the chat port, the admin shell and later front doors (WebSocket,
IRC) are thin adapters.  Delivery is synchronous and an event encodes its wire
line once, however many members receive it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.logger import Logger

from partypool.room import names as lookalikes
from partypool.room.addresses import BanList, address_group
from partypool.wire import RESERVED_NAMES, WireError, check_name, format_line, name_key

log = Logger(namespace="partypool.room.room")

_RESERVED_SKELETONS = frozenset().union(*map(lookalikes.skeletons, RESERVED_NAMES))
ROOT_NAME = "root"  # the one name a root session may take, and only it


class Member(Protocol):
    """What the room needs from a connected user, whatever carries them."""

    name: str | None
    host: str  # the address as the server sees it
    peer: str  # host:port, for the administrator
    since: float  # when the connection was made (seconds since the epoch)

    def deliver(self, event: Event) -> None:
        """Send one room event to this member; must not block."""

    def disconnect(self, reason: str) -> None:
        """Say goodbye with ``reason`` and close; the room has already let go."""


@attrs.frozen
class Event:
    """Something the room tells its members, as an object each door formats.

    ``wire`` is the v1 line, built once however many members get it; a door
    with a dialect of its own gets the same from `Event.encoded`.
    """

    verb: str
    parts: tuple[str, ...]

    @functools.cached_property
    def wire(self) -> bytes:
        return format_line(self.verb, *self.parts)

    @functools.cached_property
    def _encodings(self) -> dict[Callable[[Event], bytes], bytes]:
        return {}

    def encoded(self, encode: Callable[[Event], bytes]) -> bytes:
        """``encode(self)``, run once per event however many members get it
        (``encode`` is a dialect's formatter: a module-level function)."""
        encodings = self._encodings
        data = encodings.get(encode)
        if data is None:
            data = encodings[encode] = encode(self)
        return data


def chat(name: str, text: str) -> Event:
    return Event("CHAT", (name, text))


def joined(name: str) -> Event:
    return Event("JOINED", (name,))


def left(name: str, reason: str) -> Event:
    return Event("LEFT", (name, reason))


def notice(text: str) -> Event:
    return Event("NOTICE", (text,))


def shutdown(seconds: int, text: str) -> Event:
    return Event("SHUTDOWN", (str(seconds), text))


def private(sender: str, text: str) -> Event:
    return Event("PRIVATE", (sender, text))


def requested(request_id: int, name: str, text: str) -> Event:
    return Event("REQUESTED", (str(request_id), name, text))


class Recorder(Protocol):
    """Keeps what the room says to everyone (`partypool.room.history`)."""

    def record(self, event: Event) -> None:
        """Keep ``event``; must not block."""


@attrs.define
class RoomStats:
    peak: int = 0
    messages: int = 0
    deliveries: int = 0
    bytes_relayed: int = 0
    requests: int = 0


@attrs.define(eq=False)
class Room:
    """Named members, their addresses, bans, and broadcast.

    One session per address means one per address group (an IPv6 /64, see
    `partypool.room.addresses`), and bans are networks.  A root session in
    the room (named ``root``) takes no seat and is no session from its
    address: the cap and the one-session-per-address rule are for users.
    What is said to everyone (``CHAT``, a ``NOTICE`` to all) goes to
    ``history`` as well.
    """

    max_members: int = 25
    allow_same_ip: bool = False
    banned_hosts: BanList = attrs.Factory(BanList)
    banned_names: set[str] = attrs.Factory(set)  # name keys
    stats: RoomStats = attrs.Factory(RoomStats)
    history: Recorder | None = None
    root: Member | None = None  # the root session, while in the room
    _members: dict[str, Member] = attrs.Factory(dict)
    _skeletons: dict[str, Member] = attrs.Factory(dict)  # names.skeletons -> member
    _groups: collections.Counter[str] = attrs.Factory(collections.Counter)
    _everyone: tuple[Member, ...] = ()

    def admission_error(self, host: str) -> WireError | None:
        """Why a new connection from ``host`` may not stay, or None if it may."""
        if host in self.banned_hosts:
            return WireError("banned", "your address is banned from this server")
        if len(self._members) - (self.root is not None) >= self.max_members:
            return WireError(
                "server-full", f"the server is full ({self.max_members} users)"
            )
        if not self.allow_same_ip and self._groups[address_group(host)]:
            return WireError(
                "duplicate-ip", "there is already a session from your address"
            )
        return None

    def join(self, member: Member, requested: str) -> str:
        """Admit ``member`` under a checked name, announce it, and return the name.

        Besides the syntax (`check_name`), a name is refused if it mixes
        scripts, or looks like (has a TR39 skeleton of) a reserved name, a
        banned name or the name of someone here.
        """
        name = check_name(requested)
        lookalikes.check_script(name)
        key, skeletons = name_key(name), lookalikes.skeletons(name)
        if skeletons & _RESERVED_SKELETONS:
            raise WireError("nick-invalid", f"{name} looks like a reserved name")
        if key in self._members:
            raise WireError("nick-taken", f"the name {name} is taken")
        twins = [self._skeletons[s] for s in skeletons if s in self._skeletons]
        if twins:
            raise WireError(
                "nick-taken", f"the name {name} looks too much like {twins[0].name}"
            )
        if key in self.banned_names or any(
            skeletons & lookalikes.skeletons(banned) for banned in self.banned_names
        ):
            raise WireError("banned", f"the name {name} is banned")
        refusal = self.admission_error(member.host)
        if refusal is not None:
            raise refusal
        self._groups[address_group(member.host)] += 1
        return self._enter(member, name)

    def join_root(self, member: Member, requested: str) -> str:
        """Admit a root session, which may take the name ``root`` and no other."""
        if name_key(requested) != ROOT_NAME:
            raise WireError("nick-invalid", f"a root session joins as {ROOT_NAME}")
        if self.root is not None:
            raise WireError(
                "nick-taken", f"{ROOT_NAME} is already in the room (another connection)"
            )
        self.root = member
        return self._enter(member, ROOT_NAME)

    def _enter(self, member: Member, name: str) -> str:
        member.name = name
        self._members[name_key(name)] = member
        self._skeletons.update(dict.fromkeys(lookalikes.skeletons(name), member))
        self._everyone = tuple(self._members.values())
        self.stats.peak = max(self.stats.peak, len(self._members))
        self.broadcast(joined(name), but=member)
        return name

    def leave(self, member: Member, reason: str) -> bool:
        """Let ``member`` go and tell the others; False if it was not here."""
        key = name_key(member.name) if member.name else None
        if key is None or self._members.get(key) is not member:
            return False
        del self._members[key]
        for skeleton in lookalikes.skeletons(member.name):
            del self._skeletons[skeleton]
        if member is self.root:
            self.root = None
        else:
            group = address_group(member.host)
            self._groups[group] -= 1
            if not self._groups[group]:
                del self._groups[group]
        self._everyone = tuple(self._members.values())
        self.broadcast(left(member.name, reason))
        return True

    def say(self, member: Member, text: str) -> None:
        self.stats.messages += 1
        event = chat(member.name, text)
        self.broadcast(event, but=member)
        if self.history is not None:
            self.history.record(event)

    def announce(self, event: Event) -> int:
        """Broadcast ``event`` to everyone and keep it in the history (a
        ``NOTICE`` to all); return how many got it."""
        reached = self.broadcast(event)
        if self.history is not None:
            self.history.record(event)
        return reached

    def broadcast(self, event: Event, but: Member | None = None) -> int:
        """Deliver ``event`` to every member except ``but``; return how many got it."""
        reached = 0
        for member in self._everyone:
            if member is not but:
                try:
                    member.deliver(event)
                except Exception:  # one broken member must not stop the rest
                    log.failure("delivering to {name}", name=member.name)
                    self.leave(member, "lost")
                    with contextlib.suppress(Exception):  # already logged
                        member.disconnect("internal error")
                    continue
                reached += 1
        self.stats.deliveries += reached
        self.stats.bytes_relayed += reached * len(event.wire)
        return reached

    def send_to(self, members: list[Member], event: Event) -> None:
        """Deliver ``event`` to some members only (notices to chosen users)."""
        for member in members:
            member.deliver(event)
        self.stats.deliveries += len(members)
        self.stats.bytes_relayed += len(members) * len(event.wire)

    def remove(self, member: Member, reason: str) -> None:
        """Disconnect ``member``; its session leaves the room as it ends
        (telling the others why, and logging it, as for any departure).
        The leave here only covers a member whose disconnect did not."""
        member.disconnect(reason)
        self.leave(member, reason)

    def names(self) -> list[str]:
        return sorted((m.name for m in self._everyone), key=name_key)

    def members(self) -> tuple[Member, ...]:
        return self._everyone

    def by_name(self, name: str) -> Member | None:
        return self._members.get(name_key(name))

    def by_host(self, host: str) -> list[Member]:
        return [m for m in self._everyone if m.host == host]

    def __len__(self) -> int:
        return len(self._members)

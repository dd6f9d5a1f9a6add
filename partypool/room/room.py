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
from typing import Protocol

import attrs
from twisted.logger import Logger

from partypool.room.addresses import BanList, address_group
from partypool.wire import WireError, check_name, format_line, name_key

log = Logger(namespace="partypool.room.room")


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
    """Something the room tells its members.  ``wire`` is the v1 line, built once."""

    verb: str
    parts: tuple[str, ...]

    @functools.cached_property
    def wire(self) -> bytes:
        return format_line(self.verb, *self.parts)


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
    `partypool.room.addresses`), and bans are networks.
    """

    max_members: int = 25
    allow_same_ip: bool = False
    banned_hosts: BanList = attrs.Factory(BanList)
    banned_names: set[str] = attrs.Factory(set)  # name keys
    stats: RoomStats = attrs.Factory(RoomStats)
    _members: dict[str, Member] = attrs.Factory(dict)
    _groups: collections.Counter[str] = attrs.Factory(collections.Counter)
    _everyone: tuple[Member, ...] = ()

    def admission_error(self, host: str) -> WireError | None:
        """Why a new connection from ``host`` may not stay, or None if it may."""
        if host in self.banned_hosts:
            return WireError("banned", "your address is banned from this server")
        if len(self._members) >= self.max_members:
            return WireError(
                "server-full", f"the server is full ({self.max_members} users)"
            )
        if not self.allow_same_ip and self._groups[address_group(host)]:
            return WireError(
                "duplicate-ip", "there is already a session from your address"
            )
        return None

    def join(self, member: Member, requested: str) -> str:
        """Admit ``member`` under a checked name, announce it, and return the name."""
        name = check_name(requested)
        key = name_key(name)
        if key in self._members:
            raise WireError("nick-taken", f"the name {name} is taken")
        if key in self.banned_names:
            raise WireError("banned", f"the name {name} is banned")
        refusal = self.admission_error(member.host)
        if refusal is not None:
            raise refusal
        member.name = name
        self._members[key] = member
        self._groups[address_group(member.host)] += 1
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
        group = address_group(member.host)
        self._groups[group] -= 1
        if not self._groups[group]:
            del self._groups[group]
        self._everyone = tuple(self._members.values())
        self.broadcast(left(member.name, reason))
        return True

    def say(self, member: Member, text: str) -> None:
        self.stats.messages += 1
        self.broadcast(chat(member.name, text), but=member)

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
        """Take ``member`` out (telling the others why), then disconnect it."""
        self.leave(member, reason)
        member.disconnect(reason)

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

"""Who may not speak, and until when: the administrator's mutes.

A mute is set on a name (compared as names are, ignoring case) and, when the
user is online, on the addresses they are connected from (address groups,
as every per-address rule: an IPv6 /64), so it holds across a reconnect
under the same name or from the same address.  It ends when it
expires or is lifted.  Every door's session asks `Mutes.remaining` before a
``SAY`` or a private message; nothing else is refused.  Mutes live in
memory: a restart lifts them (bans are the durable tool).
"""

from __future__ import annotations

import math

import attrs

from partypool.room.addresses import address_group
from partypool.room.clock import SteadyClock, steady
from partypool.wire import name_key


@attrs.frozen
class Mute:
    name: str  # as the administrator typed it
    hosts: frozenset[str]  # address groups
    until: float  # on the steady clock; math.inf until lifted


@attrs.define(eq=False)
class Mutes:
    """The mutes in force; time is read through a `SteadyClock`, so a clock
    stepped back cannot stretch one."""

    clock: SteadyClock = attrs.field(converter=steady)
    _by_name: dict[str, Mute] = attrs.Factory(dict)  # name key -> mute

    def mute(self, name: str, hosts: frozenset[str], seconds: float | None) -> Mute:
        """Mute ``name`` (and ``hosts``) for ``seconds``, or until lifted;
        a new mute of the same name replaces the old one."""
        until = math.inf if seconds is None else self.clock.seconds() + seconds
        mute = Mute(name, frozenset(map(address_group, hosts)), until)
        self._by_name[name_key(name)] = mute
        return mute

    def unmute(self, name: str) -> bool:
        """Lift the mute on ``name`` (its addresses too); False if there was none."""
        self._prune()
        return self._by_name.pop(name_key(name), None) is not None

    def remaining(self, name: str, host: str) -> float | None:
        """Seconds left on a mute of ``name`` or ``host`` (math.inf: until
        lifted), or None if neither is muted."""
        if not self._by_name:  # the common case, checked on every message
            return None
        self._prune()
        mute = self._by_name.get(name_key(name))
        if mute is None:
            group = address_group(host)
            mute = next((m for m in self._by_name.values() if group in m.hosts), None)
        if mute is None:
            return None
        return mute.until - self.clock.seconds()

    def active(self) -> list[Mute]:
        """The mutes in force, soonest to end first."""
        self._prune()
        return sorted(self._by_name.values(), key=lambda m: m.until)

    def _prune(self) -> None:
        now = self.clock.seconds()
        for key in [k for k, m in self._by_name.items() if m.until <= now]:
            del self._by_name[key]

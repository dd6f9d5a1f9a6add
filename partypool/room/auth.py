"""Secrets as the server keeps them, and the throttle on guessing them.

The chat passkey lives only as a salted SCRAM-SHA-256 verifier and the root
password only as a salted PBKDF2 hash; both are derived once at start-up.  No
object here puts a secret in its repr.
"""

from __future__ import annotations

import base64
import binascii
import collections
import os
from collections.abc import Callable

import attrs
import scramp
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from twisted.logger import Logger

from partypool.room.addresses import address_group
from partypool.room.clock import SteadyClock, steady

SCRAM_MECHANISM = "SCRAM-SHA-256"
SCRAM_USERNAME = "chat"
ROOT_USERNAME = "root"  # the SCRAM username of a root login on the chat port
DEFAULT_ITERATIONS = 390_000
_mechanism = scramp.ScramMechanism(SCRAM_MECHANISM)
log = Logger(namespace="partypool.room.auth")


class AuthFailed(Exception):
    """A SCRAM exchange that must end with ``ERR auth-failed``."""


@attrs.frozen(repr=False)
class ChatVerifier:
    """A salted SCRAM verifier (RFC 5802 StoredKey/ServerKey): the chat
    passkey's, or the root password's for root logins on the chat port."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    @classmethod
    def from_passkey(
        cls, passkey: str, iterations: int = DEFAULT_ITERATIONS
    ) -> ChatVerifier:
        return cls(*_mechanism.make_auth_info(passkey, iteration_count=iterations))

    def exchange(self) -> ScramExchange:
        return ScramExchange(self)

    def __repr__(self) -> str:
        return f"<ChatVerifier iterations={self.iterations}>"


class ScramExchange:
    """The server side of one login: two steps, each failing with `AuthFailed`.

    The SCRAM username picks the verifier: ``chat`` the passkey's, ``root``
    the root password's (when the server has one).  After `first`,
    ``username`` says which role is logging in; after `final`, that it did.
    """

    def __init__(
        self, verifier: ChatVerifier, root: ChatVerifier | None = None
    ) -> None:
        self._server = _mechanism.make_server(self._lookup)
        self._verifiers = {SCRAM_USERNAME: verifier}
        if root is not None:
            self._verifiers[ROOT_USERNAME] = root
        self.username: str | None = None

    def _lookup(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        v = self._verifiers.get(username)
        if v is None:
            raise scramp.ScramException("unknown user")
        self.username = username
        return v.salt, v.stored_key, v.server_key, v.iterations

    def first(self, client_first: str) -> str:
        """Take client-first-message, return server-first-message."""
        try:
            self._server.set_client_first(client_first)
            return self._server.get_server_first()
        except scramp.ScramException as e:
            raise AuthFailed(str(e)) from None

    def final(self, client_final: str) -> str:
        """Take client-final-message, return server-final-message if the proof holds."""
        try:
            self._server.set_client_final(client_final)
            return self._server.get_server_final()
        except scramp.ScramException as e:
            raise AuthFailed(str(e)) from None


def b64encode_text(text: str) -> str:
    """A SCRAM message as it crosses the wire: base64 of its UTF-8 (as SASL
    carries it in v1's ``AUTH`` and IRC's ``AUTHENTICATE`` alike)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def b64decode_text(text: str) -> str:
    """The SCRAM message in a base64 payload, or `AuthFailed`."""
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthFailed("malformed base64") from None


@attrs.frozen(repr=False)
class RootPassword:
    """The root password as a salted PBKDF2-HMAC-SHA256 hash."""

    salt: bytes
    digest: bytes
    iterations: int

    @classmethod
    def from_password(
        cls, password: str, iterations: int = DEFAULT_ITERATIONS
    ) -> RootPassword:
        salt = os.urandom(16)
        digest = _kdf(salt, iterations).derive(password.encode("utf-8"))
        return cls(salt, digest, iterations)

    def verify(self, candidate: str) -> bool:
        """Compare in constant time.  Slow on purpose: call it off the reactor."""
        try:
            _kdf(self.salt, self.iterations).verify(
                candidate.encode("utf-8"), self.digest
            )
        except InvalidKey:
            return False
        return True

    def __repr__(self) -> str:
        return f"<RootPassword iterations={self.iterations}>"


def _kdf(salt: bytes, iterations: int) -> PBKDF2HMAC:
    return PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations
    )


# The server-wide pause after --login-failures-total failures: this long at
# first, doubling while the failures go on, at most the per-address penalty.
FIRST_PAUSE = 5.0
# An address group that logged in is let through a server-wide pause this long.
TRUSTED_FOR = 24 * 3600.0


@attrs.define
class LoginThrottle:
    """Guessing limits for one port, by address group (`address_group`).

    One group is refused for ``penalty`` s after ``max_failures`` failed logins
    in ``window`` s.  Across all groups, ``max_total`` failures in ``window`` s
    pause every login for a while (first `FIRST_PAUSE` s, doubling each time
    the budget is spent again, at most ``penalty``), so a hundred addresses
    guessing five times each are not all checked.  Groups that have logged in
    recently (`TRUSTED_FOR`) are let through such a pause, so regular users are
    not locked out by someone else's attack.

    Keyed by client addresses, so it is pruned and capped: at most
    ``max_tracked`` groups are remembered in each table, the oldest forgotten
    first.  Time is read through a `SteadyClock`: a clock stepped back cannot
    stretch a refusal.
    """

    clock: SteadyClock = attrs.field(converter=steady)
    max_failures: int = 5
    window: float = 60.0
    penalty: float = 60.0
    max_total: int = 50
    max_tracked: int = 10_000
    _failures: dict[str, collections.deque[float]] = attrs.Factory(dict)
    _refused_until: dict[str, float] = attrs.Factory(dict)
    _trusted: dict[str, float] = attrs.Factory(dict)  # group -> last login
    _everyone: collections.deque[float] = attrs.field(init=False)
    _paused_until: float = float("-inf")
    _pause: float = 0.0

    def __attrs_post_init__(self) -> None:
        self._everyone = collections.deque(maxlen=self.max_total)

    def refused_for(self, host: str) -> float:
        """Seconds before ``host`` may try to log in again; 0 if it may now."""
        group, now = address_group(host), self.clock.seconds()
        until = self._refused_until.get(group)
        if until is not None and until <= now:
            del self._refused_until[group]
            until = None
        if self._paused_until > now and not self._is_trusted(group, now):
            until = max(until or now, self._paused_until)
        return 0.0 if until is None else until - now

    def is_refused(self, host: str) -> bool:
        return self.refused_for(host) > 0

    def recent_failures(self, host: str) -> int:
        """Failures from ``host``'s group counted now (within ``window``, since
        a refusal)."""
        times = self._failures.get(address_group(host))
        if not times:
            return 0
        cutoff = self.clock.seconds() - self.window
        return sum(1 for t in times if t > cutoff)

    def failed(self, host: str) -> None:
        group, now = address_group(host), self.clock.seconds()
        times = self._failures.pop(group, None) or collections.deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.max_failures:
            self._refused_until[group] = now + self.penalty
            times.clear()
        else:
            self._failures[group] = times  # re-inserted: newest last
        self._count_everywhere(now)
        self._prune(now)

    def succeeded(self, host: str) -> None:
        """``host`` logged in: its group gets through a server-wide pause."""
        group, now = address_group(host), self.clock.seconds()
        self._trusted.pop(group, None)
        self._trusted[group] = now  # newest last
        _trim(self._trusted, self.max_tracked, lambda t: t <= now - TRUSTED_FOR)

    def _is_trusted(self, group: str, now: float) -> bool:
        since = self._trusted.get(group)
        return since is not None and now - since < TRUSTED_FOR

    def _count_everywhere(self, now: float) -> None:
        """Pause every login once ``max_total`` failures fall within ``window``."""
        everyone = self._everyone
        everyone.append(now)
        spent = len(everyone) == self.max_total and everyone[0] > now - self.window
        if not spent or self._paused_until > now:
            return
        if now - self._paused_until > self.window:  # quiet since the last pause
            self._pause = FIRST_PAUSE
        else:
            self._pause = self._pause * 2
        self._pause = min(self._pause, max(self.penalty, FIRST_PAUSE))
        self._paused_until = now + self._pause
        log.warn(
            "{count} failed logins within {window:g} s from all addresses: "
            "logins paused for {pause:g} s",
            count=self.max_total,
            window=self.window,
            pause=self._pause,
        )

    def _prune(self, now: float) -> None:
        _trim(self._failures, self.max_tracked, lambda t: t[-1] <= now - self.window)
        _trim(self._refused_until, self.max_tracked, lambda until: until <= now)


def _trim(table: dict, cap: int, expired: Callable[[object], bool]) -> None:
    """Drop expired entries once ``table`` passes ``cap``, then the oldest."""
    if len(table) <= cap:
        return
    for key in [k for k, v in table.items() if expired(v)]:
        del table[key]
    while len(table) > cap:
        del table[next(iter(table))]

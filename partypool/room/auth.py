"""Secrets as the server keeps them, and the throttle on guessing them.

The chat passkey lives only as a salted SCRAM-SHA-256 verifier and the root
password only as a salted PBKDF2 hash; both are derived once at start-up.  No
object here puts a secret in its repr.

A login is SCRAM-SHA-256, or over TLS SCRAM-SHA-256-PLUS with
``tls-server-end-point`` channel binding (RFC 5929): the door hands the
exchange the binding data of the certificate its connection used, and a
client that saw another certificate (a relay's) cannot prove the passkey.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import os
from collections.abc import Callable

import attrs
import scramp
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from partypool.room.addresses import address_group
from partypool.room.clock import SteadyClock, steady

SCRAM_MECHANISM = "SCRAM-SHA-256"
#: With channel binding; our clients require it over TLS.
SCRAM_PLUS_MECHANISM = "SCRAM-SHA-256-PLUS"
SCRAM_MECHANISMS = frozenset({SCRAM_MECHANISM, SCRAM_PLUS_MECHANISM})
#: RFC 5929 section 4; the data is partypool.tls.tls_server_end_point's.
CHANNEL_BINDING = "tls-server-end-point"
SCRAM_USERNAME = "chat"
ROOT_USERNAME = "root"  # the SCRAM username of a root login on the chat port
DEFAULT_ITERATIONS = 390_000
_mechanism = scramp.ScramMechanism(SCRAM_MECHANISM)


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

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` is the one this verifier was made from (for a
        door whose login sends the secret itself, such as IRC's SASL PLAIN).
        Slow on purpose, like the PBKDF2 it runs: call it off the reactor."""
        _, stored_key, _, _ = _mechanism.make_auth_info(
            secret, iteration_count=self.iterations, salt=self.salt
        )
        return hmac.compare_digest(stored_key, self.stored_key)

    def exchange(
        self,
        mechanism: str = SCRAM_MECHANISM,
        channel_binding: bytes | None = None,
    ) -> ScramExchange:
        """One login with C{mechanism}; C{channel_binding} is the
        ``tls-server-end-point`` data of a TLS connection (None over plain
        TCP, where only SCRAM-SHA-256 works)."""
        return ScramExchange(self, mechanism=mechanism, channel_binding=channel_binding)

    def __repr__(self) -> str:
        return f"<ChatVerifier iterations={self.iterations}>"


class ScramExchange:
    """The server side of one login: two steps, each failing with `AuthFailed`.

    The SCRAM username picks the verifier: ``chat`` the passkey's, ``root``
    the root password's (when the server has one).  After `first`,
    ``username`` says which role is logging in; after `final`, that it did.
    The mechanism is SCRAM-SHA-256, or SCRAM-SHA-256-PLUS bound to
    ``channel_binding`` (the TLS connection's ``tls-server-end-point`` data).
    """

    def __init__(
        self,
        verifier: ChatVerifier,
        root: ChatVerifier | None = None,
        *,
        mechanism: str = SCRAM_MECHANISM,
        channel_binding: bytes | None = None,
    ) -> None:
        self._verifiers = {SCRAM_USERNAME: verifier}
        if root is not None:
            self._verifiers[ROOT_USERNAME] = root
        self.username: str | None = None
        self._server: scramp.core.ScramServer | None = None
        if mechanism not in SCRAM_MECHANISMS:
            self._refusal = "unsupported mechanism"
        elif mechanism == SCRAM_PLUS_MECHANISM and channel_binding is None:
            self._refusal = "channel binding needs TLS"
        else:
            # Given over TLS to both mechanisms: a client that says it could
            # bind but thinks we cannot ("y") is refused, as RFC 5802 asks.
            binding = None
            if channel_binding is not None:
                binding = (CHANNEL_BINDING, channel_binding)
            self._server = scramp.ScramMechanism(mechanism).make_server(
                self._lookup, channel_binding=binding
            )

    def _lookup(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        v = self._verifiers.get(username)
        if v is None:
            raise scramp.ScramException("unknown user")
        self.username = username
        return v.salt, v.stored_key, v.server_key, v.iterations

    def first(self, client_first: str) -> str:
        """Take client-first-message, return server-first-message."""
        if self._server is None:
            raise AuthFailed(self._refusal)
        try:
            self._server.set_client_first(client_first)
            return self._server.get_server_first()
        except scramp.ScramException as e:
            raise AuthFailed(str(e)) from None

    def final(self, client_final: str) -> str:
        """Take client-final-message, return server-final-message if the proof holds."""
        if self._server is None:
            raise AuthFailed(self._refusal)
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


# A group that logged in gets through pauses of the `FailureBudget` this long.
TRUSTED_FOR = 24 * 3600.0


@attrs.define
class LoginThrottle:
    """Guessing limits for one port, by address group (`address_group`).

    One group is refused for ``penalty`` s after ``max_failures`` failed logins
    in ``window`` s.  A group that logs in has its failures forgotten, and is
    `trusted` for `TRUSTED_FOR`: a pause of the port's `FailureBudget` (when
    everyone's failures spent it) lets it through, so regular users are not
    locked out by someone else's attack.

    Keyed by client addresses, so it is pruned and capped: at most
    ``max_tracked`` groups are remembered in each table, the oldest forgotten
    first.  Time is read through a `SteadyClock`: a clock stepped back cannot
    stretch a refusal.
    """

    clock: SteadyClock = attrs.field(converter=steady)
    max_failures: int = 5
    window: float = 60.0
    penalty: float = 60.0
    max_tracked: int = 10_000
    _failures: dict[str, collections.deque[float]] = attrs.Factory(dict)
    _refused_until: dict[str, float] = attrs.Factory(dict)
    _trusted: dict[str, float] = attrs.Factory(dict)  # group -> last login

    def is_refused(self, host: str) -> bool:
        group = address_group(host)
        until = self._refused_until.get(group)
        if until is None:
            return False
        if self.clock.seconds() < until:
            return True
        del self._refused_until[group]
        return False

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
        self._prune(now)

    def succeeded(self, host: str) -> None:
        """``host`` logged in: its group's failures so far are forgotten, and
        the group is `trusted` for a while.

        An SSH client offers each of its keys in turn, and each refused one
        counts; without this, a few logins a minute would lock root out.
        """
        group, now = address_group(host), self.clock.seconds()
        self._failures.pop(group, None)
        self._trusted.pop(group, None)
        self._trusted[group] = now  # newest last
        _trim(self._trusted, self.max_tracked, lambda t: t <= now - TRUSTED_FOR)

    def trusted(self, host: str) -> bool:
        """Whether ``host``'s group logged in within `TRUSTED_FOR`."""
        since = self._trusted.get(address_group(host))
        return since is not None and self.clock.seconds() - since < TRUSTED_FOR

    def _prune(self, now: float) -> None:
        _trim(self._failures, self.max_tracked, lambda t: t[-1] <= now - self.window)
        _trim(self._refused_until, self.max_tracked, lambda until: until <= now)


@attrs.define
class FailureBudget:
    """Failed logins from all addresses together, with a growing pause.

    Per-address throttling lets 100 addresses guess 5 times each; this bounds
    the total.  Once ``limit`` failures fall within ``window`` seconds, checks
    pause for ``backoff`` seconds, starting at 1 s and doubling with each
    further failure while over the limit, up to ``max_backoff``; a failure
    when the budget has room again starts the pause over at 1 s.  Each port
    has its own (`PartyPool.new_budget`).
    """

    clock: SteadyClock = attrs.field(converter=steady)
    limit: int = 20
    window: float = 60.0
    max_backoff: float = 60.0
    backoff: float = attrs.field(default=0.0, init=False)
    _times: collections.deque[float] = attrs.field(init=False)
    _paused_until: float = attrs.field(default=0.0, init=False)

    @_times.default
    def _bounded(self) -> collections.deque[float]:
        return collections.deque(maxlen=self.limit)

    def paused(self) -> float:
        """Seconds until checks may run again (0: they may run now).

        Never more than the backoff, even if the clock was stepped back.
        """
        return min(self.backoff, max(0.0, self._paused_until - self.clock.seconds()))

    def failed(self) -> None:
        now = self.clock.seconds()
        self._times.append(now)
        if len(self._times) < self.limit or self._times[0] <= now - self.window:
            self.backoff = 0.0
            return
        self.backoff = min(max(1.0, 2 * self.backoff), self.max_backoff)
        self._paused_until = now + self.backoff


def _trim(table: dict, cap: int, expired: Callable[[object], bool]) -> None:
    """Drop expired entries once ``table`` passes ``cap``, then the oldest."""
    if len(table) <= cap:
        return
    for key in [k for k, v in table.items() if expired(v)]:
        del table[key]
    while len(table) > cap:
        del table[next(iter(table))]

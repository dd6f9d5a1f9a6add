"""
How ``partypool-root`` reaches the admin port: one SSH connection made with
conch's client (pure Python, so it freezes and runs on Windows without an
OpenSSH binary), logged in as ``root``, on which every command is an SSH
``exec`` request in a channel of its own.

The connection is built here rather than with conch's
C{SSHCommandClientEndpoint}: that endpoint closes the connection after its
one command (the shell needs many on one login), only speaks IPv4, reports a
refused login and a vanished server alike, and loses output that arrives
before the reply to ``exec`` (see L{_ExecChannel}).

Trust: the host key must match the pin (from the invite or
``--host-key-fingerprint``), else the key remembered for that host and port
in a known-hosts file; a key seen for the first time is trusted for this
connection, its fingerprint shown on stderr, and remembered only once root has
logged in (trust on first use, like OpenSSH's
``StrictHostKeyChecking=accept-new``, except that an impostor which cannot
log us in does not get its key pinned in place of the real one).  The check
runs during key exchange, before the user-auth service starts, so a password
is never sent to a server with the wrong key.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from typing import IO

import attrs
from twisted.conch.ssh import channel, common, connection, keys, transport, userauth
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.python.failure import Failure

from partypool.client.known_servers import Entry, KnownServers
from partypool.identity import ssh_fingerprint

ROOT = b"root"
#: Seconds allowed for the TCP connection.
CONNECT_TIMEOUT = 15
#: Seconds allowed, once connected, for key exchange and login.
LOGIN_TIMEOUT = 60
LOST = "the connection to the server was lost"


class AdminConnectError(Exception):
    """The connection or the login failed; ``str()`` is a message for users."""


class HostKeyChanged(AdminConnectError):
    """The server showed a host key other than the one expected: someone may
    be intercepting the connection, so nothing secret was sent."""

    def __init__(
        self, host: str, port: int, expected: str, actual: str, how_to_reset: str
    ) -> None:
        super().__init__(
            "@@@ WARNING: THE ADMIN PORT'S SSH HOST KEY HAS CHANGED! @@@\n"
            f"The server at {host} port {port} shows the host key\n"
            f"  {actual}\n"
            f"but we expected\n  {expected}\n"
            "Someone could be intercepting this connection, or the server got a\n"
            "new host key. Nothing was sent; the connection was refused.\n"
            f"{how_to_reset}"
        )


class LoginRefused(AdminConnectError):
    """The server turned down every credential we had."""


@attrs.define
class HostKeyCheck:
    """
    Decides whether a host key is the admin port's.

    @ivar pin: the fingerprint from an invite or C{--host-key-fingerprint};
        when set, the known-hosts file is neither read nor written.
    @ivar report: where to tell the user about a first-seen key (stderr).
    """

    host: str
    port: int
    pin: str | None
    known: KnownServers
    report: Callable[[str], None]
    _first_seen: str | None = attrs.field(default=None, init=False)

    def check(self, key: keys.Key) -> None:
        """Return if ``key`` is trusted; raise L{HostKeyChanged} if not.

        Fingerprints are compared exactly: they are base64, so case matters.
        """
        actual = ssh_fingerprint(key)
        if self.pin is not None:
            if actual != self.pin:
                raise HostKeyChanged(
                    self.host,
                    self.port,
                    self.pin,
                    actual,
                    "The expected key came from your invite or "
                    "--host-key-fingerprint;\nask the administrator for the "
                    "server's fingerprint (it is in the server log).",
                )
            return
        entry = self.known.lookup(self.host, self.port)
        if entry is None:
            self._first_seen = actual
            self.report(
                f"First connection to {self.host} port {self.port}; its SSH host "
                f"key is\n  {actual}\n(it is remembered if the login succeeds)."
            )
        elif entry.fingerprint != actual:
            raise HostKeyChanged(
                self.host,
                self.port,
                entry.fingerprint,
                actual,
                self._how_to_reset(entry),
            )

    def logged_in(self) -> None:
        """Root is logged in: remember a first-seen key from now on.

        Not before: a server that took the connection but could not log us in
        may be an impostor, and pinning its key would lock out the real one.
        """
        actual, self._first_seen = self._first_seen, None
        if actual is None:
            return
        try:
            self.known.remember(self.host, self.port, actual)
        except OSError as e:
            self.report(f"could not remember the SSH host key {actual}: {e}")
            return
        self.report(
            f"Remembered the SSH host key of {self.host} port {self.port}:\n"
            f"  {actual}\nin {self.known.path} (trusted from now on)."
        )

    def _how_to_reset(self, entry: Entry) -> str:
        return (
            "If the administrator confirms the new key (the server logs its\n"
            f"fingerprint at start-up), delete line {entry.line_number} of\n"
            f"  {self.known.path}\nand connect again."
        )


@attrs.frozen
class Credentials:
    """What root logs in with: a password or a private key, never both (the
    user chose one; trying the other would only add a failed login)."""

    password: bytes | None = None
    key: keys.Key | None = None


class _RootAuth(userauth.SSHUserAuthClient):
    """Offers each credential once; when the server has refused them all,
    conch's client disconnects and L{_AdminTransport} reports the refusal."""

    def __init__(self, credentials: Credentials, ready: _Ready) -> None:
        super().__init__(ROOT, ready)
        self._password = credentials.password
        self._key = credentials.key

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:  # noqa: N802
        password, self._password = self._password, None
        return None if password is None else defer.succeed(password)

    def getPublicKey(self) -> keys.Key | None:  # noqa: N802
        return None if self._key is None else self._key.public()

    def getPrivateKey(self) -> Deferred[keys.Key]:  # noqa: N802
        key, self._key = self._key, None
        assert key is not None
        return defer.succeed(key)


class _Ready(connection.SSHConnection):
    """The connection service; started means logged in."""

    def __init__(self, ready: Deferred[connection.SSHConnection]) -> None:
        super().__init__()
        self._ready = ready

    def serviceStarted(self) -> None:  # noqa: N802
        super().serviceStarted()
        self._ready.callback(self)


class _AdminTransport(transport.SSHClientTransport):
    """The client side of one admin connection: host key check, login, and a
    C{ready} Deferred that fires with the logged-in connection service or
    fails with an L{AdminConnectError} saying what went wrong."""

    def __init__(self, check: HostKeyCheck, credentials: Credentials) -> None:
        self.check = check
        self.credentials = credentials
        self.ready: Deferred[connection.SSHConnection] = Deferred(self._cancel)
        self.ready.addCallback(self._logged_in)
        self.lost = False
        self._waiting: list[Deferred[None]] = []
        self._refusal: AdminConnectError | None = None
        self._secure = False

    def _logged_in(self, service: connection.SSHConnection) -> connection.SSHConnection:
        self.check.logged_in()
        return service

    def _cancel(self, ready: Deferred[connection.SSHConnection]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Deferred[bool]:  # noqa: N802
        try:
            self.check.check(keys.Key.fromString(hostKey))
        except HostKeyChanged as e:
            self._refusal = e
            return defer.fail(e)
        return defer.succeed(True)

    def connectionSecure(self) -> None:  # noqa: N802
        self._secure = True
        self.requestService(_RootAuth(self.credentials, _Ready(self.ready)))

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.lost = True
        super().connectionLost(reason)
        if not self.ready.called:
            self.ready.errback(self._why_lost())
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def when_closed(self) -> Deferred[None]:
        """A new Deferred that fires once the connection is closed."""
        d: Deferred[None] = Deferred()
        if self.lost:
            d.callback(None)
        else:
            self._waiting.append(d)
        return d

    def _why_lost(self) -> AdminConnectError:
        if self._refusal is not None:
            return self._refusal
        if self._secure:
            what = (
                "the root password"
                if self.credentials.key is None
                else "this key (is it in the server's authorized_keys?)"
            )
            return LoginRefused(
                f"Permission denied: the server refused {what}. (After "
                "repeated failed logins it refuses this address for a while.)"
            )
        return AdminConnectError(
            "the server closed the connection before the SSH handshake finished"
        )


@attrs.define
class AdminConnection:
    """A logged-in admin connection: run commands on it, then close it."""

    _transport: _AdminTransport
    _service: connection.SSHConnection

    def run(self, command: str, output: IO[str]) -> Deferred[int]:
        """Run one root command in its own ``exec`` channel, streaming its
        output to ``output``; fires with its exit status (0 or 1), or fails
        with L{AdminConnectError} if it could not run or the connection was
        lost before it ended."""
        if self._transport.lost:
            return defer.fail(AdminConnectError(LOST))
        finished: Deferred[int] = Deferred()
        self._service.openChannel(
            _ExecChannel(command.encode("utf-8"), output, finished)
        )
        return finished

    def close(self) -> Deferred[None]:
        """Log out; fires once the connection is closed."""
        if not self._transport.lost:
            self._transport.loseConnection()
        return self._transport.when_closed()

    def when_closed(self) -> Deferred[None]:
        """Fires when the connection closes, whoever closed it."""
        return self._transport.when_closed()


def connect_admin(
    reactor: IReactorTCP | IReactorTime,
    check: HostKeyCheck,
    credentials: Credentials,
) -> Deferred[AdminConnection]:
    """Connect, check the host key and log in as root; fails with an
    L{AdminConnectError} that says which of the three went wrong."""
    protocol = _AdminTransport(check, credentials)
    endpoint = HostnameEndpoint(
        reactor, check.host, check.port, timeout=CONNECT_TIMEOUT
    )

    def failed(failure: Failure) -> Failure:
        if failure.check(AdminConnectError):
            return failure
        if failure.check(defer.TimeoutError):
            raise AdminConnectError(
                f"{check.host} port {check.port} did not complete an SSH login "
                f"within {LOGIN_TIMEOUT} seconds"
            )
        raise AdminConnectError(
            f"cannot connect to {check.host} port {check.port}: "
            f"{failure.getErrorMessage()}"
        )

    d = connectProtocol(endpoint, protocol)
    d.addCallback(lambda _: protocol.ready.addTimeout(LOGIN_TIMEOUT, reactor))
    d.addCallback(lambda service: AdminConnection(protocol, service))
    return d.addErrback(failed)


class _ExecChannel(channel.SSHChannel):
    """A session channel that runs one command: its output decoded as it
    streams, then its exit status.

    conch's C{SSHCommandClientEndpoint} channel cannot be used: it fails on
    output that arrives before the reply to the ``exec`` request, and the
    admin server sends a quick command's output first.
    """

    name = b"session"

    def __init__(self, command: bytes, output: IO[str], finished: Deferred[int]):
        super().__init__()
        self.command = command
        self.output = output
        self.finished = finished
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.status: int | None = None

    def openFailed(self, reason: Failure) -> None:  # noqa: N802
        self._fail(f"the server refused a session: {reason.getErrorMessage()}")

    def channelOpen(self, specificData: bytes) -> None:  # noqa: N802
        self.conn.sendRequest(
            self, b"exec", common.NS(self.command), wantReply=True
        ).addErrback(self._exec_failed)

    def _exec_failed(self, reason: Failure) -> None:
        # A quick command's channel may close before the reply to "exec"
        # arrives, which conch reports as a failed request: closed() decides.
        if not self.localClosed:
            self._fail("the server refused to run the command")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.output.write(self.decoder.decode(data))
        self.output.flush()

    def request_exit_status(self, data: bytes) -> None:
        (self.status,) = struct.unpack(">L", data)

    def closed(self) -> None:
        self.output.write(self.decoder.decode(b"", final=True))
        if self.status is None:
            self._fail(LOST)
        elif not self.finished.called:
            self.finished.callback(self.status)

    def _fail(self, message: str) -> None:
        if not self.finished.called:
            self.finished.errback(AdminConnectError(message))

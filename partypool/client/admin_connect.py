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
in a known-hosts file.  A key seen for the first time is trusted only when the
caller's C{confirm_new} says so (``partypool-root`` shows the fingerprint and
asks, as OpenSSH does, or takes ``--accept-new-host-key``); without it the
connection is refused with the fingerprint and the ways to trust it.  A
trusted first-seen key is remembered only once root has logged in, so an
impostor which cannot log us in does not get its key pinned in place of the
real one.  The check runs during key exchange, before the user-auth service
starts, so a password is never sent to a server with an unknown or wrong key.

A port that closes without the version line every SSH server sends first is
no admin port: the usual mistake is giving the chat port (TLS, or plain
``HELLO partypool/…``), and the error says so and names the admin port's
default.

What the admin port prints is stripped of ESC and every other C0/C1 control
(newline and tab stay), so even an impostor cannot set the window title or
write the clipboard (OSC 52) through it.
"""

from __future__ import annotations

import codecs
import re
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
from partypool.invite import DEFAULT_ADMIN_PORT

ROOT = b"root"
#: Seconds allowed for the TCP connection.
CONNECT_TIMEOUT = 15
#: Seconds allowed, once connected, for key exchange and login.
LOGIN_TIMEOUT = 60
LOST = "the connection to the server was lost"
#: Bytes kept of what a server says before an SSH version line, to tell
#: which other server it is.
_FIRST_BYTES = 64
#: A TLS record starts with an alert (21) or a handshake (22) byte.
_TLS_RECORD = (b"\x15", b"\x16")


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


class HostKeyUnknown(AdminConnectError):
    """A host key seen for the first time that nobody said to trust."""


class LoginRefused(AdminConnectError):
    """The server turned down every credential we had."""


#: Removed from the admin port's output: C0 but newline and tab, DEL, C1, and
#: the bidirectional overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """C{text} without anything a terminal would take as a command."""
    return _UNSAFE.sub("", text)


@attrs.define
class HostKeyCheck:
    """
    Decides whether a host key is the admin port's.

    @ivar pin: the fingerprint from an invite or C{--host-key-fingerprint};
        when set, the known-hosts file is neither read nor written.
    @ivar report: where to tell the user about a first-seen key (stderr).
    @ivar confirm_new: asked with the fingerprint of a key seen for the first
        time; fires True to trust it. None: refuse every such key.
    """

    host: str
    port: int
    pin: str | None
    known: KnownServers
    report: Callable[[str], None]
    confirm_new: Callable[[str], Deferred[bool]] | None = None
    _first_seen: str | None = attrs.field(default=None, init=False)

    def check(self, key: keys.Key) -> Deferred[bool]:
        """Fires True if ``key`` is trusted; fails with L{HostKeyChanged} or
        L{HostKeyUnknown} if not.

        Fingerprints are compared exactly: they are base64, so case matters.
        """
        actual = ssh_fingerprint(key)
        if self.pin is not None:
            if actual != self.pin:
                return defer.fail(
                    HostKeyChanged(
                        self.host,
                        self.port,
                        self.pin,
                        actual,
                        "The expected key came from your invite or "
                        "--host-key-fingerprint;\nask the administrator for the "
                        "server's fingerprint (it is in the server log).",
                    )
                )
            return defer.succeed(True)
        entry = self.known.lookup(self.host, self.port)
        if entry is not None and entry.fingerprint is not None:
            if entry.fingerprint == actual:
                return defer.succeed(True)
            return defer.fail(
                HostKeyChanged(
                    self.host,
                    self.port,
                    entry.fingerprint,
                    actual,
                    self._how_to_reset(entry),
                )
            )
        if self.confirm_new is None:
            return defer.fail(self._unknown(actual))
        return self.confirm_new(actual).addCallback(self._decided, actual)

    def _decided(self, trusted: bool, actual: str) -> bool:
        if not trusted:
            raise HostKeyUnknown("Host key not trusted: nothing was sent.")
        self._first_seen = actual
        self.report(
            f"First connection to {self.host} port {self.port}; its SSH host "
            f"key is\n  {actual}\n(it is remembered if the login succeeds)."
        )
        return True

    def _unknown(self, actual: str) -> HostKeyUnknown:
        return HostKeyUnknown(
            f"The admin port at {self.host} port {self.port} shows an SSH host "
            f"key not seen before:\n  {actual}\nNothing was sent. If that is "
            "the server's key (the server logs its fingerprint at start-up), "
            f"connect with --host-key-fingerprint {actual}\nor "
            "--accept-new-host-key, or use an invite (it pins the key)."
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
    user chose one; trying the other would only add a failed login).

    @ivar ask_password: without a password or key, asks for the password
        once the host key is trusted (up to L{PASSWORD_TRIES} times), so it
        is never typed for a server that turns out to be the wrong one.
    """

    password: bytes | None = None
    key: keys.Key | None = None
    ask_password: Callable[[], Deferred[bytes]] | None = None


#: Passwords asked for at most, as OpenSSH does.
PASSWORD_TRIES = 3


class _RootAuth(userauth.SSHUserAuthClient):
    """Offers each credential once (an asked password up to three times);
    when the server has refused them all, conch's client disconnects and
    L{_AdminTransport} reports the refusal."""

    def __init__(self, credentials: Credentials, ready: _Ready) -> None:
        super().__init__(ROOT, ready)
        self._password = credentials.password
        self._key = credentials.key
        # Asked only when logging in with a password at all.
        self._ask = credentials.ask_password if credentials.key is None else None
        self._asked = 0

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:  # noqa: N802
        password, self._password = self._password, None
        if password is not None:
            return defer.succeed(password)
        if self._ask is None or self._asked >= PASSWORD_TRIES:
            return None
        self._asked += 1
        return self._ask().addErrback(self._not_typed)

    def _not_typed(self, failure: Failure) -> Deferred[bytes]:
        """No password typed (Ctrl-D, Ctrl-C): give up, saying why."""
        self.transport.abandon(AdminConnectError(failure.getErrorMessage()))
        return Deferred()  # the connection is closing; nothing more to try

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
        self._first_bytes = b""

    def _logged_in(self, service: connection.SSHConnection) -> connection.SSHConnection:
        self.check.logged_in()
        return service

    def _cancel(self, ready: Deferred[connection.SSHConnection]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Deferred[bool]:  # noqa: N802
        def refused(failure: Failure) -> Failure:
            failure.trap(HostKeyChanged, HostKeyUnknown)
            self._refusal = failure.value
            return failure

        return self.check.check(keys.Key.fromString(hostKey)).addErrback(refused)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.gotVersion and len(self._first_bytes) < _FIRST_BYTES:
            self._first_bytes += data[: _FIRST_BYTES - len(self._first_bytes)]
        super().dataReceived(data)

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

    def abandon(self, error: AdminConnectError) -> None:
        """Close the connection; the login fails with C{error}."""
        self._refusal = error
        self.transport.loseConnection()

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
        if not self.gotVersion:
            return AdminConnectError(self._not_ssh())
        return AdminConnectError(
            "the server closed the connection before the SSH handshake finished"
        )

    def _not_ssh(self) -> str:
        """Why the port closed without an SSH version line: most likely it
        is the chat port."""
        where = f"{self.check.host} port {self.check.port}"
        chat_port = (
            "this looks like the chat port; the admin (SSH) port is another "
            f"one (default {DEFAULT_ADMIN_PORT})"
        )
        seen = self._first_bytes
        if seen.startswith(b"HELLO partypool/"):
            greeting = terminal_safe(seen.split(b"\n")[0].decode("utf-8", "replace"))
            return f"{where} greeted with {greeting.strip()!r}: {chat_port}"
        if seen[:1] in _TLS_RECORD:
            return f"{where} answered in TLS, not SSH: {chat_port}"
        if not seen:
            return (
                f"{where} closed the connection without the version line every "
                f"SSH server sends first; {chat_port}. (An admin port that "
                "refuses your address for a while, after too many logins from "
                "it, closes the same way.)"
            )
        shown = terminal_safe(seen.decode("utf-8", "replace")).strip()
        return (
            f"{where} is not an SSH server (it said {shown!r}): is it the admin port?"
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
        self.output.write(terminal_safe(self.decoder.decode(data)))
        self.output.flush()

    def request_exit_status(self, data: bytes) -> None:
        (self.status,) = struct.unpack(">L", data)

    def closed(self) -> None:
        self.output.write(terminal_safe(self.decoder.decode(b"", final=True)))
        if self.status is None:
            self._fail(LOST)
        elif not self.finished.called:
            self.finished.callback(self.status)

    def _fail(self, message: str) -> None:
        if not self.finished.called:
            self.finished.errback(AdminConnectError(message))

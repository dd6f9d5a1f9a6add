"""The admin port: an SSH server whose only user, ``root``, gets the root shell.

conch's ``manhole_ssh.TerminalSession`` cannot serve this port (``exec``
raises, a window resize raises, and it never learns who logged in), so this
module has its own realm, avatar and session:

- ``ssh -p PORT root@host`` with a pty: `AdminShell` (editing, history, Tab);
- the same without a pty (``ssh -T``, a pipe): one command per input line, no
  prompt, and the exit status of the last command;
- ``ssh -p PORT root@host <command>``: one command, its output, and exit
  status 0 (success) or 1 (failure).

Login: the root password (PBKDF2 hash, checked in a thread) and/or the keys in
``<data-dir>/authorized_keys``; user ``root`` only.  Each failure counts
against the client address in a `LoginThrottle`; a refused address gets no
further checks for a while, and checks still running count as failures.
Until it has logged in, a connection counts against its address and must
finish in time: the chat port's policy (``--max-pending-logins``,
``--login-timeout``) applies here too.  The realm learns
the login method and address through the cred "mind", so every root command
is logged with both.

`make_admin_factory` builds the factory and binds nothing; tap.py binds it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import avatar
from twisted.conch.checkers import InMemorySSHKeyDB, SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import connection, factory, keys, session, transport, userauth
from twisted.cred import credentials, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.admin.commands import AdminCommands, Operator, Result
from partypool.admin.shell import AdminShell
from partypool.identity import ssh_fingerprint
from partypool.room.auth import LoginThrottle, RootPassword
from partypool.room.pool import PartyPool, host_and_peer
from partypool.tls import ConfigError, check_private, write_private

log = Logger(namespace="partypool.admin")

ROOT = b"root"


# -- keys -----------------------------------------------------------------------


def ensure_host_key(path: Path) -> keys.Key:
    """Load the host key at ``path``, generating an Ed25519 one on first start.

    Written owner-only from its first byte (OpenSSH private key format) and
    refused at start-up if others can read it, so a stolen key is not silent.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = ed25519.Ed25519PrivateKey.generate()
        write_private(
            path,
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
        )
        log.info("generated SSH host key {path}", path=path)
    check_private(path)
    try:
        return keys.Key.fromFile(str(path))
    except (keys.BadKeyError, ValueError) as e:
        raise ConfigError(f"cannot read the SSH host key {path}: {e}") from None


def load_authorized_keys(path: Path) -> list[keys.Key]:
    """Public keys from an OpenSSH ``authorized_keys`` file (missing file: none).

    Blank lines and ``#`` comments are skipped; key options (``from=…``) are
    not supported and say so.  Any bad line stops start-up with its number.
    """
    if not path.exists():
        return []
    found = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            found.append(keys.Key.fromString(line))
        except (keys.BadKeyError, ValueError, IndexError) as e:
            raise ConfigError(
                f"{path} line {number}: not a public key in OpenSSH format "
                f"(type base64 [comment]; options are not supported): {e}"
            ) from None
    return found


# -- login ----------------------------------------------------------------------


@implementer(ICredentialsChecker)
@attrs.define
class RootPasswordChecker:
    """User ``root`` with the root password, verified off the reactor."""

    password: RootPassword
    defer_to_thread: Callable[..., Deferred[bool]] = threads.deferToThread
    credentialInterfaces = (credentials.IUsernamePassword,)  # noqa: N815

    def requestAvatarId(self, creds: credentials.IUsernamePassword) -> Deferred[bytes]:  # noqa: N802
        if creds.username != ROOT:
            return defer.fail(UnauthorizedLogin("only root may log in"))
        candidate = creds.password.decode("utf-8", "replace")

        def checked(ok: bool) -> bytes:
            if not ok:
                raise UnauthorizedLogin("wrong password")
            return ROOT

        return self.defer_to_thread(self.password.verify, candidate).addCallback(
            checked
        )


def _login_method(creds: object) -> str:
    if credentials.ISSHPrivateKey.providedBy(creds):
        return "key " + ssh_fingerprint(keys.Key.fromString(creds.blob))
    return "password"


@attrs.define
class _ThrottledPortal:
    """The factory's portal, seen from one connection.

    It refuses a throttled address before any check, counts failed attempts
    (not OpenSSH's unsigned "would this key do?" probes), and passes the
    login method and address to the realm as the mind.

    Checks still running (the password hash takes a while, in a thread) count
    against the address like failures, from every connection at once through
    the shared ``in_flight``: ``max_failures`` guesses sent in parallel get
    ``max_failures`` checks, not one each before the first result is in.
    """

    portal: portal.Portal
    throttle: LoginThrottle
    host: str
    peer: str
    in_flight: collections.Counter[str] = attrs.Factory(collections.Counter)

    def listCredentialsInterfaces(self) -> list:  # noqa: N802
        return self.portal.listCredentialsInterfaces()

    def _refused(self) -> bool:
        if self.throttle.is_refused(self.host):
            return True
        busy = self.in_flight[self.host] + self.throttle.recent_failures(self.host)
        return busy >= self.throttle.max_failures

    def login(self, creds: object, mind: object, *interfaces: object) -> Deferred:
        method = _login_method(creds)
        if self._refused():
            log.warn("admin login refused from {peer}: throttled", peer=self.peer)
            return defer.fail(UnauthorizedLogin("too many failures"))
        probe = credentials.ISSHPrivateKey.providedBy(creds) and not creds.signature
        if not probe:
            self.in_flight[self.host] += 1
        d = self.portal.login(creds, Operator(method, self.peer), *interfaces)

        def checked(result: object) -> object:
            if not probe:
                self.in_flight[self.host] -= 1
                if self.in_flight[self.host] <= 0:
                    del self.in_flight[self.host]
            return result

        def failed(reason: Failure) -> Failure:
            if not probe and reason.check(UnauthorizedLogin):
                self.throttle.failed(self.host)
                log.warn(
                    "admin login failed from {peer}: user {user!r}, {method}",
                    peer=self.peer,
                    user=creds.username,
                    method=method,
                )
            return reason

        return d.addBoth(checked).addErrback(failed)


class AdminUserAuth(userauth.SSHUserAuthServer):
    """conch's userauth service with the per-connection `_ThrottledPortal`.

    It also takes the pool's clock (for the login timeout and the pause after
    a wrong password) and allows two minutes to log in, as OpenSSH's
    LoginGraceTime does, instead of conch's ten hours.
    """

    loginTimeout = 120  # noqa: N815

    def serviceStarted(self) -> None:  # noqa: N802
        self.clock = self.transport.factory.clock
        super().serviceStarted()
        host, peer = host_and_peer(self.transport.transport.getPeer())
        admin = self.transport.factory
        self.portal = _ThrottledPortal(
            admin.portal, admin.throttle, host, peer, admin.in_flight
        )


class AdminServerTransport(transport.SSHServerTransport):
    """conch's server transport with a per-address cap and a login grace time.

    From TCP connect until root has logged in, a connection counts against its
    address (at most ``factory.max_pending``; more are closed unanswered) and
    has ``factory.login_grace`` seconds on the pool's clock to finish (like
    OpenSSH's LoginGraceTime), so clients that never send a version or never
    finish key exchange do not stay: conch's own timeout starts only with
    userauth.
    """

    _host: str | None = None
    _grace: IDelayedCall | None = None
    _refused = False

    def connectionMade(self) -> None:  # noqa: N802
        admin = self.factory
        host, peer = host_and_peer(self.transport.getPeer())
        if admin.pending[host] >= admin.max_pending:
            log.warn(
                "admin connection from {peer} refused: {count} logins pending",
                peer=peer,
                count=admin.pending[host],
            )
            self._refused = True
            self.transport.abortConnection()
            return
        self._host = host
        admin.pending[host] += 1
        self._grace = admin.clock.callLater(admin.login_grace, self._grace_over, peer)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self._refused:
            super().dataReceived(data)

    def setService(self, service: object) -> None:  # noqa: N802
        # userauth sets the avatar just before it starts ssh-connection.
        if getattr(self, "avatar", None) is not None:
            self._end_pending()
        super().setService(service)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self._end_pending()
        if not self._refused:
            super().connectionLost(reason)

    def _grace_over(self, peer: str) -> None:
        self._grace = None
        log.warn(
            "admin connection from {peer} dropped: no login in {grace:g} s",
            peer=peer,
            grace=self.factory.login_grace,
        )
        self._end_pending()
        self.transport.abortConnection()

    def _end_pending(self) -> None:
        grace, self._grace = self._grace, None
        if grace is not None and grace.active():
            grace.cancel()
        host, self._host = self._host, None
        if host is not None:
            pending = self.factory.pending
            pending[host] -= 1
            if pending[host] <= 0:
                del pending[host]


# -- realm, avatar, session -------------------------------------------------------


@implementer(portal.IRealm)
@attrs.define
class AdminRealm:
    pool: PartyPool
    manhole: bool = False
    reload_tls: Callable[[], str] | None = None

    def requestAvatar(  # noqa: N802
        self, avatar_id: bytes, mind: Operator, *interfaces: object
    ) -> tuple[object, AdminAvatar, Callable[[], None]]:
        if IConchUser not in interfaces:
            raise NotImplementedError("only SSH sessions are served")
        log.info(
            "root logged in ({method}) from {address}",
            method=mind.method,
            address=mind.address,
        )
        commands = AdminCommands(
            self.pool, mind, manhole=self.manhole, reload_tls=self.reload_tls
        )
        user = AdminAvatar(commands)

        def logout() -> None:
            log.info("root ({address}) logged out", address=mind.address)

        return IConchUser, user, logout


class AdminAvatar(avatar.ConchUser):
    """A logged-in root: sessions only (no port forwarding, no subsystems)."""

    def __init__(self, commands: AdminCommands) -> None:
        super().__init__()
        self.commands = commands
        self.channelLookup[b"session"] = session.SSHSession


@implementer(ISession)
class AdminSession:
    """One SSH session channel: a shell (pty or not) or one exec'd command."""

    def __init__(self, user: AdminAvatar) -> None:
        self.commands = user.commands
        self._pty: tuple[int, int] | None = None  # (width, height)
        self._terminal: insults.ServerProtocol | None = None
        self._lines: _LineShell | None = None
        self._process: session.SSHSessionProcessProtocol | None = None

    def getPty(self, term: bytes, window_size: tuple, modes: object) -> None:  # noqa: N802
        rows, columns = window_size[:2]
        self._pty = (columns, rows)

    def windowChanged(self, window_size: tuple) -> None:  # noqa: N802
        rows, columns = window_size[:2]
        self._pty = (columns, rows)
        if self._terminal is not None:
            self._terminal.terminalProtocol.terminalSize(columns, rows)

    def openShell(self, process: session.SSHSessionProcessProtocol) -> None:  # noqa: N802
        self._process = process
        if self._pty is None:
            self._lines = _LineShell(self.commands, self._end)
            self._lines.makeConnection(process)
            process.makeConnection(session.wrapProtocol(self._lines))
            return
        terminal = insults.ServerProtocol(AdminShell, self.commands, self._end)
        self._terminal = terminal
        terminal.makeConnection(process)
        terminal.terminalProtocol.terminalSize(*self._pty)
        process.makeConnection(session.wrapProtocol(terminal))

    def execCommand(
        self, process: session.SSHSessionProcessProtocol, command: bytes
    ) -> None:  # noqa: N802
        self._process = process
        newline = b"\n" if self._pty is None else b"\r\n"

        def done(result: Result) -> None:
            result = _without_terminal(result)
            if result.output:
                process.write(_encode(result.output, newline))
            self._end(result.status)

        def run() -> None:
            self.commands.run(command.decode("utf-8", "replace")).addCallback(done)

        # Not before conch has confirmed the exec request: output that overtook
        # the confirmation would crash clients such as SSHCommandClientEndpoint.
        self.commands.pool.clock.callLater(0, run)

    def eofReceived(self) -> None:  # noqa: N802
        if self._lines is not None:
            self._lines.input_ended()

    def closed(self) -> None:
        self._process = None

    def _end(self, status: int) -> None:
        """Send the exit status, then close the channel (once)."""
        process, self._process = self._process, None
        if process is None:
            return
        reason = ProcessDone(0) if status == 0 else ProcessTerminated(exitCode=status)
        process.processEnded(Failure(reason))


components.registerAdapter(AdminSession, AdminAvatar, ISession)


class _LineShell(Protocol):
    """A session without a pty: commands line by line, in order, no prompt.

    At end of input (or ``exit``) the session ends with the status of the
    last command, as ``sh`` does, so ``echo stats | ssh -T …`` composes.
    """

    def __init__(self, commands: AdminCommands, end: Callable[[int], None]) -> None:
        self.commands = commands
        self.end = end
        self._buffer = b""
        self._lines: list[bytes] = []
        self._busy = False
        self._ended = False
        self._gone = False
        self._status = 0

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        """The channel closed: queued lines are dropped, not run unseen."""
        self._gone = True
        self._lines.clear()
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._gone:
            return
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        self._lines.extend(line.rstrip(b"\r") for line in lines)
        self._next()

    def input_ended(self) -> None:
        if self._buffer:
            self._lines.append(self._buffer)
            self._buffer = b""
        self._ended = True
        self._next()

    def _next(self) -> None:
        if self._busy or self._gone:
            return
        if not self._lines:
            if self._ended:
                self.end(self._status)
            return
        self._busy = True
        line = self._lines.pop(0).decode("utf-8", "replace")
        self.commands.run(line).addCallback(self._done)

    def _done(self, result: Result) -> None:
        self._busy = False
        if self._gone:
            return
        result = _without_terminal(result)
        if result.output:
            self.transport.write(_encode(result.output, b"\n"))
        if result.action == "exit":
            self.end(self._status)
            return
        self._status = result.status
        self._next()


def _without_terminal(result: Result) -> Result:
    """The manhole needs a pty; exec and piped sessions say so instead."""
    if result.action == "manhole":
        return Result("manhole needs a terminal: log in with ssh -t and type it", 1)
    return result


def _encode(text: str, newline: bytes) -> bytes:
    return text.encode("utf-8").replace(b"\n", newline) + newline


# -- the factory --------------------------------------------------------------------


class AdminFactory(factory.SSHFactory):
    """An SSH server factory with its own key dicts (conch's are class-level)."""

    protocol = AdminServerTransport
    services = {
        b"ssh-userauth": AdminUserAuth,
        b"ssh-connection": connection.SSHConnection,
    }

    def __init__(
        self,
        host_key: keys.Key,
        realm_portal: portal.Portal,
        throttle: LoginThrottle,
        clock: IReactorTime,
        max_pending: int,
        login_grace: float,
    ) -> None:
        self.clock = clock
        self.max_pending = max_pending
        self.login_grace = login_grace
        self.publicKeys = {host_key.sshType(): host_key.public()}
        self.privateKeys = {host_key.sshType(): host_key}
        self.portal = realm_portal
        self.throttle = throttle
        # Per address: connections not yet logged in, checks still running.
        self.pending: collections.Counter[str] = collections.Counter()
        self.in_flight: collections.Counter[str] = collections.Counter()


def make_admin_factory(
    pool: PartyPool,
    *,
    host_key: keys.Key,
    root_password: RootPassword | None,
    authorized_keys: list[keys.Key],
    manhole: bool = False,
    reload_tls: Callable[[], str] | None = None,
    throttle: LoginThrottle | None = None,
    defer_to_thread: Callable[..., Deferred[bool]] = threads.deferToThread,
) -> AdminFactory | None:
    """The admin port's factory, or None when root could not log in at all.

    ``reload_tls`` (``CertificateReload.reload``) adds the ``reload-tls``
    command; ``manhole`` the ``manhole`` command.
    """
    checkers: list[ICredentialsChecker] = []
    if root_password is not None:
        checkers.append(RootPasswordChecker(root_password, defer_to_thread))
    if authorized_keys:
        checkers.append(
            SSHPublicKeyChecker(InMemorySSHKeyDB({ROOT: list(authorized_keys)}))
        )
    if not checkers:
        return None
    realm_portal = portal.Portal(AdminRealm(pool, manhole, reload_tls), checkers)
    throttle = throttle or pool.new_throttle()
    limits = pool.limits
    return AdminFactory(
        host_key,
        realm_portal,
        throttle,
        pool.clock,
        max_pending=limits.max_pending_logins,
        login_grace=limits.login_timeout,
    )

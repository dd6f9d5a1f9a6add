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
``<data-dir>/authorized_keys``, read again at every key login as sshd does, so
a key added while the server runs works at once; user ``root`` only.  The
realm learns the login method and address through the cred "mind", so every
root command is logged with both.

Anyone can reach the port, so everything before login is bounded:

- Algorithms: only modern ones (`KEY_EXCHANGES`, `CIPHERS`, `MACS`,
  `USER_KEY_ALGORITHMS`), and no compression: it starts right after key
  exchange, before login, and conch inflates without a bound.
- Connections: until root has logged in, a connection counts against its
  address and against the port's total (`Unauthenticated`): past
  ``--max-pending-logins`` from its address it is closed at once,
  unanswered; past ``--max-unauthenticated`` in all, the oldest is dropped
  instead.  It must log in within ``--login-timeout`` seconds of connecting
  (OpenSSH's LoginGraceTime).
- Attempts: each failure, a refused unsigned key probe included, counts
  against the address in a `LoginThrottle`; a refused address gets no checks
  for a while, and checks still running count as failures.  Password checks,
  slow on purpose, also have a budget for all addresses together
  (`FailureBudget`, ``--login-budget``) and at most `PASSWORD_CHECKS` run at
  once; past either, a password is refused unchecked (from an address that
  logged in within a day, not for the budget: `LoginThrottle.trusted`).  Key
  logins are never paused for other addresses' failures.
- "An address" is an address group for every rule here, as on the chat
  port: an IPv6 /64 (`partypool.room.addresses`).

A normal login and logout log three lines (login, each command, logout);
conch's own chatter stays at debug and info level, where `partypool.logs`
drops it, and a client's goodbye is not an error.

`make_admin_factory` builds the factory and binds nothing; tap.py binds it.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable
from pathlib import Path

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import avatar
from twisted.conch.checkers import IAuthorizedKeysDB
from twisted.conch.error import ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import connection, factory, keys, session, transport, userauth
from twisted.conch.ssh.common import getNS
from twisted.cred import credentials, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.admin.commands import AdminCommands, Operator, Result
from partypool.admin.shell import AdminShell
from partypool.identity import ssh_fingerprint
from partypool.room.addresses import address_group
from partypool.room.auth import FailureBudget, LoginThrottle, RootPassword
from partypool.room.pool import PartyPool, Unauthenticated, host_and_peer
from partypool.tls import ConfigError, check_private, write_private

log = Logger(namespace="partypool.admin")

ROOT = b"root"

# What the port offers, most preferred first, each cut to what conch supports.
# Left out on purpose: CBC ciphers and 3DES, SHA-1 and MD5 MACs, SHA-1 key
# exchanges, group exchange (it needs a moduli file; curve25519 does the job)
# and compression.  Without CBC or an EtM MAC, the Terrapin prefix truncation
# (CVE-2023-48795) has nothing to work on, though conch lacks strict kex.
KEY_EXCHANGES = (
    b"mlkem768x25519-sha256",
    b"curve25519-sha256",
    b"curve25519-sha256@libssh.org",
    b"ecdh-sha2-nistp256",
    b"ecdh-sha2-nistp384",
    b"ecdh-sha2-nistp521",
)
CIPHERS = (b"aes256-ctr", b"aes192-ctr", b"aes128-ctr")
MACS = (b"hmac-sha2-512", b"hmac-sha2-256")
# The signatures root's key may log in with (no ssh-rsa: SHA-1; no DSA).
USER_KEY_ALGORITHMS = (
    b"ssh-ed25519",
    b"sk-ssh-ed25519@openssh.com",
    b"ecdsa-sha2-nistp256",
    b"ecdsa-sha2-nistp384",
    b"ecdsa-sha2-nistp521",
    b"sk-ecdsa-sha2-nistp256@openssh.com",
    b"rsa-sha2-512",
    b"rsa-sha2-256",
)
# Password checks running at once, for all connections together: each keeps a
# core busy for the length of the hash, and the chat needs the other.
PASSWORD_CHECKS = 2


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


def read_authorized_keys(path: Path) -> tuple[list[keys.Key], list[str]]:
    """The public keys in an OpenSSH ``authorized_keys`` file, and its bad lines.

    A missing file has none.  Blank lines and ``#`` comments are skipped; key
    options (``from=…``) are not supported and say so.  A bad line is named
    by its number only: its text might be a pasted private key.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    found, problems = [], []
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            found.append(keys.Key.fromString(line))
        except (keys.BadKeyError, ValueError, IndexError, struct.error):
            problems.append(
                f"{path} line {number}: not a public key in OpenSSH format "
                "(type base64 [comment]; options are not supported)"
            )
    return found, problems


def load_authorized_keys(path: Path) -> list[keys.Key]:
    """`read_authorized_keys` at start-up: a bad line stops it, with its number."""
    found, problems = read_authorized_keys(path)
    if problems:
        raise ConfigError(problems[0])
    return found


@implementer(IAuthorizedKeysDB)
@attrs.define
class AuthorizedKeys:
    """Root's keys, read from ``authorized_keys`` at every key login (as sshd).

    A key added or removed while the server runs counts from the next login,
    with no reload or restart.  A bad line is logged and skipped, so a typo
    does not lock root out of the other keys (at start-up it stops the server
    instead: `load_authorized_keys`).
    """

    path: Path

    def getAuthorizedKeys(self, avatar_id: bytes) -> list[keys.Key]:  # noqa: N802
        if avatar_id != ROOT:
            return []
        try:
            found, problems = read_authorized_keys(self.path)
        except OSError as e:
            log.error("cannot read root's keys: {error}", error=e)
            return []
        for problem in problems:
            log.warn("{problem}: skipped", problem=problem)
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


@implementer(ICredentialsChecker)
@attrs.define
class RootKeyChecker:
    """User ``root`` with one of its keys; "would this key do?" answered truly.

    conch's ``SSHPublicKeyChecker`` answers that unsigned probe with yes for
    any key at all, so OpenSSH signs with every key it has (asking for each
    passphrase) before it hears no.  Here only root's keys get a yes
    (``ValidPublicKey``); a stranger's key fails at once, as with sshd.
    """

    keys: IAuthorizedKeysDB
    credentialInterfaces = (credentials.ISSHPrivateKey,)  # noqa: N815

    def requestAvatarId(self, creds: credentials.ISSHPrivateKey) -> Deferred[bytes]:  # noqa: N802
        try:
            key = keys.Key.fromString(creds.blob)
        except (keys.BadKeyError, ValueError, IndexError, struct.error):
            return defer.fail(UnauthorizedLogin("malformed public key"))
        if key not in self.keys.getAuthorizedKeys(creds.username):
            return defer.fail(UnauthorizedLogin("key not authorized"))
        if not creds.signature:
            return defer.fail(ValidPublicKey())
        try:
            good = key.verify(creds.signature, creds.sigData)
        except Exception:  # a malformed signature, of any kind, is a bad one
            good = False
        if not good:
            return defer.fail(UnauthorizedLogin("bad signature"))
        return defer.succeed(creds.username)


def _login_method(creds: object) -> str:
    if credentials.ISSHPrivateKey.providedBy(creds):
        return "key " + ssh_fingerprint(keys.Key.fromString(creds.blob))
    return "password"


@attrs.define
class AdminLogins:
    """What every connection to the admin port shares about logging in.

    ``running`` counts the checks in progress per address group; ``passwords``
    the password checks in progress from all addresses.
    """

    portal: portal.Portal
    throttle: LoginThrottle
    budget: FailureBudget
    password_checks: int = PASSWORD_CHECKS
    running: collections.Counter[str] = attrs.Factory(collections.Counter)
    passwords: int = 0


@attrs.define
class _LoginGate:
    """The admin port's portal, seen from one connection.

    Before any check it refuses an address the throttle refuses, or whose
    checks still running plus recent failures use up its allowance (so
    guesses sent in parallel get no more checks than guesses sent one by
    one); a password, also while the budget of all addresses is spent or
    `PASSWORD_CHECKS` are running.  It counts every failed attempt (unsigned
    key probes too: a probe is how a stranger's key is tried), forgets an
    address's failures when it logs in, and passes the login method and
    address to the realm as the mind.
    """

    logins: AdminLogins
    host: str
    peer: str

    def listCredentialsInterfaces(self) -> list:  # noqa: N802
        return self.logins.portal.listCredentialsInterfaces()

    def login(self, creds: object, mind: object, *interfaces: object) -> Deferred:
        logins, host = self.logins, self.host
        password = credentials.IUsernamePassword.providedBy(creds)
        why = self._refusal(password)
        if why is not None:
            log.warn("admin login refused from {peer}: {why}", peer=self.peer, why=why)
            return defer.fail(UnauthorizedLogin(why))
        method = _login_method(creds)
        group = address_group(host)  # as the throttle counts
        logins.running[group] += 1
        logins.passwords += password
        d = logins.portal.login(creds, Operator(method, self.peer), *interfaces)

        def finished(result: object) -> object:
            logins.running[group] -= 1
            if logins.running[group] <= 0:
                del logins.running[group]
            logins.passwords -= password
            return result

        def succeeded(result: object) -> object:
            logins.throttle.succeeded(host)
            return result

        def failed(reason: Failure) -> Failure:
            # ValidPublicKey: "that key would do", the answer to a good probe.
            if reason.check(UnauthorizedLogin) and not reason.check(ValidPublicKey):
                self._failed(creds.username, method, password)
            return reason

        return d.addBoth(finished).addCallbacks(succeeded, failed)

    def refuse(self, user: bytes, what: str) -> Deferred:
        """An attempt no checker will see, refused (``what`` was wrong with it)."""
        self.failed_attempt(user, what)
        return defer.fail(UnauthorizedLogin(what))

    def failed_attempt(self, user: bytes, what: str) -> None:
        """Count an attempt no checker saw as a failure all the same."""
        why = self._refusal(password=False)
        if why is None:
            self._failed(user, what, password=False)
        else:
            log.warn("admin login refused from {peer}: {why}", peer=self.peer, why=why)

    def _refusal(self, password: bool) -> str | None:
        logins, host = self.logins, self.host
        throttle, budget = logins.throttle, logins.budget
        if throttle.is_refused(host):
            return "throttled"
        if (
            logins.running[address_group(host)] + throttle.recent_failures(host)
            >= throttle.max_failures
        ):
            return "throttled"
        if not password:
            return None
        if (pause := budget.paused()) and not throttle.trusted(host):
            return (
                f"password checks paused for {pause:.0f} s: {budget.limit} failures "
                f"from all addresses in {budget.window:g} s"
            )
        if logins.passwords >= logins.password_checks:
            return f"{logins.passwords} password checks running"
        return None

    def _failed(self, user: bytes, method: str, password: bool) -> None:
        self.logins.throttle.failed(self.host)
        if password:
            self.logins.budget.failed()
        log.warn(
            "admin login failed from {peer}: user {user!r}, {method}",
            peer=self.peer,
            user=user,
            method=method,
        )


class AdminUserAuth(userauth.SSHUserAuthServer):
    """conch's userauth service with a per-connection `_LoginGate` as portal.

    It also takes the pool's clock (for the login timeout and the pause after
    a wrong password), allows two minutes to log in, as OpenSSH's
    LoginGraceTime does, instead of conch's ten hours, and checks public keys
    before conch sees them.
    """

    loginTimeout = 120  # noqa: N815

    def serviceStarted(self) -> None:  # noqa: N802
        self.clock = self.transport.factory.clock
        super().serviceStarted()
        host, peer = host_and_peer(self.transport.transport.getPeer())
        self.portal = _LoginGate(self.transport.factory.logins, host, peer)

    def ssh_USERAUTH_REQUEST(self, packet: bytes) -> Deferred | None:  # noqa: N802
        """conch's, but a request cut short or garbled is a failed attempt that
        ends the connection (conch let the parse error escape: a traceback at
        critical level for every such packet)."""
        try:
            return super().ssh_USERAUTH_REQUEST(packet)
        except (struct.error, IndexError, ValueError):
            self.portal.failed_attempt(self.user or b"", "malformed request")
            self.transport.sendDisconnect(
                transport.DISCONNECT_PROTOCOL_ERROR, b"malformed request"
            )
            return None

    def auth_publickey(self, packet: bytes) -> Deferred:
        """conch's, for well-formed keys signing with `USER_KEY_ALGORITHMS` only.

        conch logs an algorithm it cannot use by its name as the client sent
        it, at error level: a newline in the name made a forged log entry.
        Such a request is refused here first, its name logged nowhere, and
        counts as a failed attempt.
        """
        algorithm, blob = getNS(packet[1:], 2)[:2]  # cut short: see above
        try:
            key = keys.Key.fromString(blob)
        except (keys.BadKeyError, ValueError, IndexError, struct.error):
            return self.portal.refuse(self.user, "malformed public key")
        except UnsupportedAlgorithm:
            return self.portal.refuse(self.user, "unsupported public key")
        if (
            algorithm not in USER_KEY_ALGORITHMS
            or algorithm not in key.supportedSignatureAlgorithms()
        ):
            return self.portal.refuse(self.user, "key algorithm not accepted")
        return super().auth_publickey(packet)


def _supported(wanted: tuple[bytes, ...], available: list[bytes]) -> list[bytes]:
    return [name for name in wanted if name in available]


class AdminServerTransport(transport.SSHServerTransport):
    """conch's server transport with modern algorithms only and a login grace time.

    The factory admits it (`AdminFactory.buildProtocol`); from then until root
    has logged in it counts as unauthenticated, and it has
    ``factory.login_grace`` seconds on the pool's clock to finish, so clients
    that never send a version or never finish key exchange do not stay:
    conch's own timeout starts only with userauth.
    """

    supportedKeyExchanges = _supported(  # noqa: N815
        KEY_EXCHANGES, transport.SSHServerTransport.supportedKeyExchanges
    )
    supportedCiphers = _supported(
        CIPHERS, transport.SSHServerTransport.supportedCiphers
    )  # noqa: N815
    supportedMACs = _supported(MACS, transport.SSHServerTransport.supportedMACs)  # noqa: N815
    supportedCompressions = [b"none"]  # noqa: N815

    peer = ""
    _grace: IDelayedCall | None = None

    def connectionMade(self) -> None:  # noqa: N802
        admin = self.factory
        self._grace = admin.clock.callLater(admin.login_grace, self._grace_over)
        super().connectionMade()

    def sendExtInfo(self, extensions: list[tuple[bytes, bytes]]) -> None:  # noqa: N802
        # conch names its host key algorithms as server-sig-algs, which
        # clients read as the signatures accepted from users (RFC 8308 3.1):
        # an RSA user key would then fall back to SHA-1, which OpenSSH refuses.
        accepted = b",".join(USER_KEY_ALGORITHMS)
        super().sendExtInfo(
            [
                (name, accepted if name == b"server-sig-algs" else value)
                for name, value in extensions
            ]
        )

    def receiveError(self, reasonCode: int, description: bytes) -> None:  # noqa: N802
        """The client said why it is leaving: after a session, "disconnected by
        user" (conch logs every goodbye as an error; it is normal)."""
        if reasonCode != transport.DISCONNECT_BY_APPLICATION:
            log.info(
                "admin connection from {peer} closed by the client: {description}",
                peer=self.peer,
                description=description.decode("utf-8", "replace"),
            )

    def setService(self, service: object) -> None:  # noqa: N802
        # userauth sets the avatar just before it starts ssh-connection.
        if getattr(self, "avatar", None) is not None:
            self._end_unauthenticated()
        super().setService(service)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self._end_unauthenticated()
        super().connectionLost(reason)

    def _grace_over(self) -> None:
        self._grace = None
        self.disconnect(f"no login in {self.factory.login_grace:g} s")

    def disconnect(self, reason: str) -> None:
        """Drop this connection, not logged in yet (`Unauthenticated` asks too)."""
        log.warn(
            "admin connection from {peer} dropped: {reason}",
            peer=self.peer,
            reason=reason,
        )
        self._end_unauthenticated()
        self.transport.abortConnection()

    def _end_unauthenticated(self) -> None:
        grace, self._grace = self._grace, None
        if grace is not None and grace.active():
            grace.cancel()
        self.factory.unauthenticated.release(self)


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
    """An SSH server factory with its own key dicts (conch's are class-level).

    Each connection must be admitted by `Unauthenticated`; one refused gets
    no protocol, so Twisted closes the socket at once, before a byte is sent.
    """

    protocol = AdminServerTransport
    services = {
        b"ssh-userauth": AdminUserAuth,
        b"ssh-connection": connection.SSHConnection,
    }
    noisy = False  # "admin port listening on …" says it

    def __init__(
        self,
        host_key: keys.Key,
        logins: AdminLogins,
        unauthenticated: Unauthenticated,
        clock: IReactorTime,
        login_grace: float,
    ) -> None:
        self.clock = clock
        self.login_grace = login_grace
        self.publicKeys = {host_key.sshType(): host_key.public()}
        self.privateKeys = {host_key.sshType(): host_key}
        self.logins = logins
        self.portal = logins.portal
        self.unauthenticated = unauthenticated

    def buildProtocol(self, addr: IAddress) -> AdminServerTransport | None:  # noqa: N802
        host, peer = host_and_peer(addr)
        protocol = super().buildProtocol(addr)
        refusal = self.unauthenticated.admit(protocol, host)
        if refusal is not None:
            log.warn(
                "admin connection from {peer} refused: {why}", peer=peer, why=refusal
            )
            return None
        protocol.peer = peer
        return protocol


def make_admin_factory(
    pool: PartyPool,
    *,
    host_key: keys.Key,
    root_password: RootPassword | None,
    authorized_keys: IAuthorizedKeysDB | None,
    manhole: bool = False,
    reload_tls: Callable[[], str] | None = None,
    throttle: LoginThrottle | None = None,
    defer_to_thread: Callable[..., Deferred[bool]] = threads.deferToThread,
) -> AdminFactory | None:
    """The admin port's factory, or None when root could not log in at all.

    ``authorized_keys`` is where root's keys come from at each login (an
    `AuthorizedKeys` file).  ``reload_tls`` (``CertificateReload.reload``)
    adds the ``reload-tls`` command; ``manhole`` the ``manhole`` command.
    """
    checkers: list[ICredentialsChecker] = []
    if root_password is not None:
        checkers.append(RootPasswordChecker(root_password, defer_to_thread))
    if authorized_keys is not None:
        checkers.append(RootKeyChecker(authorized_keys))
    if not checkers:
        return None
    limits = pool.limits
    logins = AdminLogins(
        portal.Portal(AdminRealm(pool, manhole, reload_tls), checkers),
        throttle or pool.new_throttle(),
        pool.new_budget(),
    )
    return AdminFactory(
        host_key,
        logins,
        pool.new_unauthenticated(),
        pool.clock,
        login_grace=limits.login_timeout,
    )

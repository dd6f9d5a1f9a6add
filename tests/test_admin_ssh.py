"""The SSH admin port in memory: keys, login, exec, shells with and without a pty.

A small conch client talks to the real `AdminFactory` through
``twisted.test.iosim`` (no sockets, no threads: the password check runs
inline and time is a `task.Clock`), so each test sees exactly the bytes and
the exit status an OpenSSH client would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.error import ValidPublicKey
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import (
    channel,
    common,
    connection,
    keys,
    session,
    transport,
    userauth,
)
from twisted.cred.credentials import SSHPrivateKey, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import globalLogPublisher
from twisted.test import iosim
from twisted.trial import unittest

from partypool.admin.commands import AdminCommands, Result
from partypool.admin.ssh import (
    AdminFactory,
    AuthorizedKeys,
    _LoginGate,
    ensure_host_key,
    load_authorized_keys,
    make_admin_factory,
)
from partypool.client.admin_connect import (
    Credentials,
    HostKeyChanged,
    HostKeyCheck,
    HostKeyUnknown,
    LoginRefused,
    _AdminTransport,
)
from partypool.client.known_servers import KnownServers
from partypool.identity import host_key_fingerprint, ssh_fingerprint
from partypool.room.auth import LoginThrottle, RootPassword
from partypool.room.pool import make_server
from partypool.tls import ConfigError
from tests.test_admin_commands import FakeMember

PASSWORD = "s3cret root"


def new_key() -> keys.Key:
    private = ed25519.Ed25519PrivateKey.generate()
    return keys.Key(private)


# -- a minimal conch client --------------------------------------------------------


class Session(channel.SSHChannel):
    """One session channel: optional pty, then exec or shell; records everything."""

    name = b"session"

    def __init__(self, command: bytes | None = None, pty: bool = False) -> None:
        super().__init__()
        self.command, self.pty = command, pty
        self.output = b""
        self.status: int | None = None
        self.opened: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()

    def channelOpen(self, data: bytes) -> None:  # noqa: N802
        if self.pty:
            self.conn.sendRequest(
                self,
                b"pty-req",
                session.packRequest_pty_req(b"xterm", (24, 80, 0, 0), b""),
            )
        if self.command is None:
            self.conn.sendRequest(self, b"shell", b"")
        else:
            self.conn.sendRequest(self, b"exec", common.NS(self.command))
        self.opened.callback(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.output += data

    def request_exit_status(self, data: bytes) -> int:
        self.status = int.from_bytes(data[:4], "big")
        return 1

    def closed(self) -> None:
        self.ended.callback(self)


class ClientConnection(connection.SSHConnection):
    def __init__(self, channel: Session) -> None:
        super().__init__()
        self.channel = channel

    def serviceStarted(self) -> None:  # noqa: N802
        super().serviceStarted()
        self.openChannel(self.channel)


class ClientAuth(userauth.SSHUserAuthClient):
    def __init__(self, user: bytes, conn, key=None, password=None) -> None:
        super().__init__(user, conn)
        self.key, self.password = key, password

    def getPublicKey(self):  # noqa: N802
        if self.key is None or self.lastPublicKey:
            return None
        return self.key.public()

    def getPrivateKey(self):  # noqa: N802
        return defer.succeed(self.key)

    def getPassword(self, prompt=None):  # noqa: N802
        if self.password is None:
            return None
        password, self.password = self.password, None  # one try per connection
        return defer.succeed(password.encode("utf-8"))


class ClientTransport(transport.SSHClientTransport):
    def __init__(self, auth: ClientAuth) -> None:
        self.auth = auth
        self.host_key: bytes | None = None
        self.disconnected: bytes | None = None

    def verifyHostKey(self, host_key: bytes, fp: bytes):  # noqa: N802
        self.host_key = host_key
        return defer.succeed(True)

    def connectionSecure(self) -> None:  # noqa: N802
        self.requestService(self.auth)

    def receiveError(self, reason: int, description: bytes) -> None:  # noqa: N802
        self.disconnected = description


# -- fixtures ------------------------------------------------------------------------


class AdminSSHTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.stopped: list[bool] = []
        self.pool = make_server(
            verifier=None,
            store=None,
            clock=self.clock,
            server_name="test",
            stop_server=lambda: self.stopped.append(True),
            history=0,  # no store to keep it in
        )
        self.alice = FakeMember("127.0.5.1", 4001, since=0.0)
        self.pool.connections.add(self.alice)
        self.pool.room.join(self.alice, "alice")
        self.host_key = new_key()
        self.root_key = new_key()
        self.throttle = LoginThrottle(self.clock)
        self.keys_file = Path(self.mktemp())
        self.keys_file.write_bytes(self.root_key.public().toString("openssh") + b"\n")
        self.factory = self.make_factory()
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def make_factory(self, **overrides) -> AdminFactory:
        arguments = dict(
            host_key=self.host_key,
            root_password=RootPassword.from_password(PASSWORD, 4096),
            authorized_keys=AuthorizedKeys(self.keys_file),
            manhole=True,
            throttle=self.throttle,
            defer_to_thread=lambda f, *a: defer.maybeDeferred(f, *a),
        )
        arguments.update(overrides)
        factory = make_admin_factory(self.pool, **arguments)
        factory.startFactory()
        self.addCleanup(factory.stopFactory)
        return factory

    def connect(
        self,
        *,
        command: bytes | None = None,
        pty: bool = False,
        user: bytes = b"root",
        key: keys.Key | None = None,
        password: str | None = None,
        source: str = "127.0.6.7",
    ) -> tuple[Session, ClientTransport, iosim.IOPump]:
        chan = Session(command=command, pty=pty)
        auth = ClientAuth(user, ClientConnection(chan), key=key, password=password)
        client = ClientTransport(auth)
        return chan, client, self.wire(client, source)

    def wire(self, client: object, source: str = "127.0.6.7") -> iosim.IOPump:
        """Connect a conch client to the factory in memory, and settle."""
        pump = self.plug(client, source)
        self.settle(pump)
        return pump

    def plug(self, client: object, source: str) -> iosim.IOPump:
        """Connect ``client`` to the factory in memory, from ``source``."""
        peer = IPv4Address("TCP", source, 40000)
        server = self.factory.buildProtocol(peer)
        return iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True, peerAddress=peer),
            client,
            iosim.FakeTransport(client, isServer=False),
            greet=True,
        )

    def settle(self, pump: iosim.IOPump) -> None:
        """Pump bytes, letting the client's pause after a wrong password elapse."""
        for _ in range(5):
            pump.flush()
            self.clock.advance(2)
        pump.flush()

    def run_exec(self, command: bytes, **kwargs) -> Session:
        chan, _, _ = self.connect(command=command, key=self.root_key, **kwargs)
        self.assertTrue(chan.ended.called, "the channel should have closed")
        return chan

    def logged(self, text: str) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events if text in formatEvent(e)]


# -- keys on disk ---------------------------------------------------------------------


class HostKeyTests(unittest.TestCase):
    def test_generated_once_owner_only_and_fingerprinted_like_ssh_keygen(self) -> None:
        """First start writes an Ed25519 key 0600; later starts load the same key."""
        path = Path(self.mktemp()) / "ssh" / "host_key"
        key = ensure_host_key(path)
        self.assertEqual(key.sshType(), b"ssh-ed25519")
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        self.assertEqual(ensure_host_key(path).public(), key.public())
        keygen = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        expected = keygen.stdout.split()[1]
        self.assertEqual(host_key_fingerprint(path), expected)
        self.assertEqual(ssh_fingerprint(key), expected)

    def test_readable_by_others_is_refused(self) -> None:
        path = Path(self.mktemp()) / "host_key"
        ensure_host_key(path)
        path.chmod(0o644)
        with self.assertRaises(ConfigError) as caught:
            ensure_host_key(path)
        self.assertIn("chmod 600", str(caught.exception))

    def test_authorized_keys_skips_comments_and_blank_lines(self) -> None:
        path = Path(self.mktemp())
        one, two = new_key(), new_key()
        path.write_bytes(
            b"# root's keys\n\n"
            + one.public().toString("openssh")
            + b" me@laptop\n"
            + two.public().toString("openssh")
            + b"\n"
        )
        self.assertEqual(load_authorized_keys(path), [one.public(), two.public()])
        self.assertEqual(load_authorized_keys(path.with_name("missing")), [])

    def test_bad_authorized_keys_line_stops_start_up_with_its_number(self) -> None:
        path = Path(self.mktemp())
        path.write_bytes(
            new_key().public().toString("openssh")
            + b'\nfrom="127.0.5.1" ssh-ed25519 AAAA\n'
        )
        with self.assertRaises(ConfigError) as caught:
            load_authorized_keys(path)
        self.assertIn("line 2", str(caught.exception))

    def test_private_key_file_in_authorized_keys_is_refused(self) -> None:
        path = Path(self.mktemp())
        private = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        path.write_bytes(private)
        with self.assertRaises(ConfigError):
            load_authorized_keys(path)


# -- the factory and login -----------------------------------------------------------


class LoginTests(AdminSSHTestCase):
    def test_no_password_and_no_keys_means_no_factory(self) -> None:
        self.assertIsNone(
            make_admin_factory(
                self.pool,
                host_key=self.host_key,
                root_password=None,
                authorized_keys=None,
            )
        )

    def test_each_factory_has_its_own_key_dicts(self) -> None:
        """ConchFactory's key dicts are class-level; ours are per factory."""
        other = self.make_factory(host_key=new_key())
        self.assertIsNot(self.factory.publicKeys, other.publicKeys)
        self.assertNotEqual(
            self.factory.publicKeys[b"ssh-ed25519"], other.publicKeys[b"ssh-ed25519"]
        )
        self.assertNotIn("publicKeys", vars(AdminFactory))

    def test_key_login_runs_a_command_and_logs_the_fingerprint(self) -> None:
        chan, client, _ = self.connect(command=b"list-conn -u", key=self.root_key)
        self.assertEqual(client.host_key, self.host_key.public().blob())
        self.assertEqual((chan.output, chan.status), (b"alice\n", 0))
        method = f"key {ssh_fingerprint(self.root_key)}"
        self.assertTrue(self.logged(f"root logged in ({method}) from 127.0.6.7:40000"))
        self.assertTrue(
            self.logged(f"root ({method} from 127.0.6.7:40000) ran 'list-conn -u'")
        )

    def test_password_login(self) -> None:
        chan, _, _ = self.connect(command=b"list-conn -ip", password=PASSWORD)
        self.assertEqual((chan.output, chan.status), (b"127.0.5.1\n", 0))
        self.assertTrue(self.logged("root logged in (password) from 127.0.6.7"))

    def test_wrong_password_unknown_user_and_unknown_key_are_refused(self) -> None:
        for kwargs in (
            dict(password="guess"),
            dict(user=b"admin", password=PASSWORD),
            dict(user=b"admin", key=self.root_key),
            dict(key=new_key()),
        ):
            with self.subTest(**{k: str(v) for k, v in kwargs.items()}):
                chan, _, _ = self.connect(command=b"stats", **kwargs)
                self.assertFalse(chan.opened.called)
                self.assertIsNone(chan.status)
        self.assertEqual(len(self.logged("admin login failed from 127.0.6.7")), 4)

    def test_repeated_failures_refuse_the_address_for_a_while(self) -> None:
        """5 failures in a minute: even the right password is refused for a minute.

        Other addresses are unaffected, and after the penalty root gets in.
        """
        for _ in range(5):
            self.connect(command=b"stats", password="guess")
        chan, _, _ = self.connect(command=b"stats", password=PASSWORD)
        self.assertFalse(chan.opened.called)
        self.assertTrue(self.logged("admin login refused from 127.0.6.7:40000"))
        other, _, _ = self.connect(command=b"stats", password=PASSWORD, source="::1")
        self.assertEqual(other.status, 0)
        self.clock.advance(61)
        chan, _, _ = self.connect(command=b"stats", password=PASSWORD)
        self.assertEqual(chan.status, 0)

    def test_an_unsigned_probe_of_a_strange_key_counts_as_a_failure(self) -> None:
        """ "Would this key do?" with a key root does not have is an attempt.

        Five of them refuse the address like five wrong passwords; a probe of
        root's own key is not a failure, and a login forgets the failures.
        (conch's own client signs even after a refused probe, so this talks
        to the per-connection gate directly.)
        """
        gate = _LoginGate(self.factory.logins, "127.0.6.7", "x")

        def probe(key: keys.Key) -> Deferred:
            blob = key.public().blob()
            creds = SSHPrivateKey(b"root", b"ssh-ed25519", blob, None, None)
            return gate.login(creds, None, IConchUser)

        for _ in range(4):
            self.failureResultOf(probe(new_key()), UnauthorizedLogin)
        self.assertEqual(self.throttle.recent_failures("127.0.6.7"), 4)
        self.failureResultOf(probe(self.root_key), ValidPublicKey)
        self.assertEqual(self.throttle.recent_failures("127.0.6.7"), 4)
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertEqual(chan.status, 0)  # (another connection, same address)
        self.assertEqual(self.throttle.recent_failures("127.0.6.7"), 0)
        for _ in range(5):
            self.failureResultOf(probe(new_key()), UnauthorizedLogin)
        self.assertTrue(self.throttle.is_refused("127.0.6.7"))
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertFalse(chan.opened.called)


# -- sessions ------------------------------------------------------------------------


class SessionTests(AdminSSHTestCase):
    def test_exec_failure_exits_1(self) -> None:
        chan = self.run_exec(b"remove -u nobody")
        self.assertEqual((chan.output, chan.status), (b"no user named nobody\n", 1))

    def test_exec_send_reaches_the_room(self) -> None:
        chan = self.run_exec(b'send -all "hello from root"')
        self.assertEqual(chan.status, 0)
        self.assertEqual(self.alice.lines, ["NOTICE hello from root"])

    def test_exec_manhole_needs_a_terminal(self) -> None:
        chan = self.run_exec(b"manhole")
        self.assertEqual(chan.status, 1)
        self.assertIn(b"needs a terminal", chan.output)

    def test_shell_without_pty_reads_lines_and_exits_with_the_last_status(self) -> None:
        chan, _, pump = self.connect(key=self.root_key)
        chan.write(b"list-conn -u\nremove -u nobody\r\n")
        self.settle(pump)
        self.assertEqual(chan.output, b"alice\nno user named nobody\n")
        self.assertFalse(chan.ended.called)
        chan.write(b"list-conn -ip")  # last line without a newline
        chan.conn.sendEOF(chan)
        self.settle(pump)
        self.assertEqual(chan.output.splitlines()[-1], b"127.0.5.1")
        self.assertEqual(chan.status, 0)
        self.assertTrue(chan.ended.called)

    def test_shell_without_pty_exit(self) -> None:
        chan, _, pump = self.connect(key=self.root_key)
        chan.write(b"remove -u nobody\nexit\nstats\n")
        self.settle(pump)
        self.assertEqual(chan.output, b"no user named nobody\nlogout\n")
        self.assertEqual(chan.status, 1)
        self.assertTrue(chan.ended.called)

    def test_pty_shell_prompt_completion_resize_and_ctrl_d(self) -> None:
        """The interactive shell: prompt, Tab completion, a resize, Ctrl-D logs out."""
        chan, _, pump = self.connect(key=self.root_key, pty=True)
        self.assertIn(b"root@partypool> ", chan.output)
        chan.write(b"list-c\t-u\r")
        self.settle(pump)
        self.assertIn(b"list-conn -u", chan.output)
        self.assertIn(b"alice\r\n", chan.output)
        self.assertTrue(chan.output.endswith(b"root@partypool> "))
        chan.conn.sendRequest(
            chan, b"window-change", session.packRequest_window_change((50, 132, 0, 0))
        )
        chan.write(b"\x04")
        self.settle(pump)
        self.assertTrue(chan.ended.called)
        self.assertEqual(chan.status, 0)
        self.assertIn(b"logout", chan.output)

    def test_pty_exec_uses_crlf(self) -> None:
        chan = self.run_exec(b"list-conn -u", pty=True)
        self.assertEqual((chan.output, chan.status), (b"alice\r\n", 0))

    def test_manhole_in_a_pty_session(self) -> None:
        """With --manhole, `manhole` turns the terminal into Python on the live pool."""
        chan, _, pump = self.connect(key=self.root_key, pty=True)
        chan.write(b"manhole\r")
        self.settle(pump)
        chan.write(b"len(pool.room)\r")
        self.settle(pump)
        self.assertIn(b"\r\n1\r\n", chan.output)
        chan.write(b"\x04")
        self.settle(pump)
        self.assertEqual(chan.status, 0)
        self.assertTrue(self.logged("opened the Python manhole"))


# -- connections that never log in, parallel guesses ---------------------------------


class Silent(Protocol):
    """A TCP client that connects and never says a word."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: object) -> None:  # noqa: N802
        self.lost = True


class PendingTests(AdminSSHTestCase):
    def silent(self, source: str = "127.0.6.7") -> Silent | None:
        """A connection that never speaks, or None if the factory refused it."""
        peer = IPv4Address("TCP", source, 40000)
        server = self.factory.buildProtocol(peer)
        if server is None:
            return None
        client = Silent()
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True, peerAddress=peer),
            client,
            iosim.FakeTransport(client, isServer=False),
            greet=True,
        )
        pump.flush()
        client.pump = pump
        return client

    def test_a_silent_connection_is_dropped_after_the_grace_time(self) -> None:
        """No version, no key exchange: conch's login timeout never starts; ours."""
        client = self.silent()
        self.assertTrue(client.received.startswith(b"SSH-2.0-"))
        self.assertEqual(self.factory.unauthenticated.count("127.0.6.7"), 1)
        self.clock.advance(self.factory.login_grace - 1)
        client.pump.flush()
        self.assertFalse(client.lost)
        self.clock.advance(1)
        client.pump.flush()
        self.assertTrue(client.lost)
        self.assertEqual(len(self.factory.unauthenticated), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(self.logged("admin connection from 127.0.6.7:40000 dropped"))

    def test_unauthenticated_connections_are_capped_per_address(self) -> None:
        """Past --max-pending-logins from one address, no protocol is even built:
        Twisted closes the socket at once, so it holds no descriptor."""
        per_address = self.pool.limits.max_pending_logins
        held = [self.silent() for _ in range(per_address)]
        self.assertFalse(any(client.lost for client in held))
        self.assertIsNone(self.silent())
        self.assertTrue(self.logged("admin connection from 127.0.6.7:40000 refused"))
        self.assertIsNotNone(self.silent(source="127.0.6.8"))
        # One hangs up: its place is free again.
        held[0].transport.loseConnection()
        held[0].pump.flush()
        self.assertEqual(
            self.factory.unauthenticated.count("127.0.6.7"), per_address - 1
        )
        self.assertIsNotNone(self.silent())

    def test_a_full_port_drops_its_oldest_unauthenticated_connection(self) -> None:
        """--max-unauthenticated bounds them from all addresses together; a new
        one pushes out the oldest, so silent connections from many addresses
        cannot keep root out, and a connection that logged in no longer counts."""
        self.pool.limits = attrs.evolve(self.pool.limits, max_unauthenticated=5)
        self.factory = self.make_factory()
        held = [self.silent(f"127.0.7.{n}") for n in range(5)]
        self.assertFalse(any(client.lost for client in held))
        newest = self.silent("127.0.7.99")
        self.assertIsNotNone(newest)
        held[0].pump.flush()
        self.assertTrue(held[0].lost)
        self.assertFalse(any(client.lost for client in held[1:]))
        self.assertTrue(self.logged("dropped: too many connections not logged in"))
        self.assertEqual(len(self.factory.unauthenticated), 5)
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertEqual(chan.status, 0)  # and made room by dropping the next
        held[1].pump.flush()
        self.assertTrue(held[1].lost)
        self.assertEqual(len(self.factory.unauthenticated), 4)

    def test_a_logged_in_connection_no_longer_counts_and_is_not_timed_out(
        self,
    ) -> None:
        chan, _, pump = self.connect(key=self.root_key)
        self.assertTrue(chan.opened.called)
        self.assertEqual(len(self.factory.unauthenticated), 0)
        for _ in range(self.pool.limits.max_pending_logins):
            self.silent()
        self.clock.advance(self.factory.login_grace + 1)
        pump.flush()
        chan.write(b"list-conn -u\n")
        self.settle(pump)
        self.assertIn(b"alice\n", chan.output)
        self.assertFalse(chan.ended.called)


class PasswordCheckTests(AdminSSHTestCase):
    """Password checks are slow on purpose: how many run, and for whom."""

    def setUp(self) -> None:
        super().setUp()
        self.checks: list[Deferred] = []

        def slow(f, *args) -> Deferred:
            self.checks.append(Deferred())
            return self.checks[-1]

        self.factory = self.make_factory(defer_to_thread=slow)
        self.logins = self.factory.logins

    def guess(self, host: str, password: bytes = b"guess") -> Deferred:
        gate = _LoginGate(self.logins, host, f"{host}:1")
        return gate.login(UsernamePassword(b"root", password), None, IConchUser)

    def test_parallel_guesses_from_one_address_count_before_their_results(
        self,
    ) -> None:
        """Five guesses sent at once get five checks; the sixth is refused unchecked.

        The checks are shared by every connection from the address, and the
        five failures then refuse the address as five in a row would.
        """
        self.logins.password_checks = 10  # this test is about one address
        results = [self.guess("127.0.6.7") for _ in range(6)]
        self.assertEqual(len(self.checks), self.throttle.max_failures)
        self.failureResultOf(results[-1], UnauthorizedLogin)
        other = self.guess("127.0.6.8")
        self.assertEqual(len(self.checks), 6)
        for check in self.checks[:5]:
            check.callback(False)
        for result in results[:5]:
            self.failureResultOf(result, UnauthorizedLogin)
        self.assertEqual(self.logins.running, {"127.0.6.8": 1})
        self.assertTrue(self.throttle.is_refused("127.0.6.7"))
        self.checks[5].callback(False)
        self.failureResultOf(other, UnauthorizedLogin)

    def test_running_checks_plus_recent_failures_are_the_allowance(self) -> None:
        for _ in range(3):
            self.throttle.failed("127.0.6.7")
        right = PASSWORD.encode()
        first = self.guess("127.0.6.7", right)
        second = self.guess("127.0.6.7", right)
        self.failureResultOf(self.guess("127.0.6.7", right), UnauthorizedLogin)
        self.assertEqual(len(self.checks), 2)
        self.checks[0].callback(True)
        self.successResultOf(first)
        self.assertEqual(self.logins.running["127.0.6.7"], 1)
        # A success frees its slot, and forgets the address's failures.
        self.assertEqual(self.throttle.recent_failures("127.0.6.7"), 0)
        third = self.guess("127.0.6.7", right)
        self.assertEqual(len(self.checks), 3)
        self.checks[1].callback(True)
        self.checks[2].callback(True)
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(self.logins.running, {})

    def test_at_most_two_password_checks_run_and_keys_still_get_in(self) -> None:
        """200 guesses from 40 addresses: two are checked at once, the rest are
        refused unchecked, and root's key login meanwhile is not held up."""
        results = [self.guess(f"127.0.8.{n % 40}") for n in range(200)]
        self.assertEqual(len(self.checks), 2)
        self.assertEqual(sum(1 for r in results if r.called), 198)
        self.assertTrue(self.logged("2 password checks running"))
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertEqual(chan.status, 0)
        self.checks[0].callback(False)
        results.append(self.guess("127.0.8.99"))
        self.assertEqual(len(self.checks), 3)
        for check in self.checks[1:]:
            check.callback(False)
        for result in results:
            self.failureResultOf(result, UnauthorizedLogin)

    def test_failures_from_all_addresses_pause_password_checks(self) -> None:
        """--login-budget failures from anywhere in the window pause password
        checks (1 s, then doubling while over budget); keys are not paused,
        and once the window has passed, checks run again."""
        budget = self.logins.budget
        for n in range(budget.limit):
            guess = self.guess(f"127.0.9.{n}")
            self.checks[-1].callback(False)
            self.failureResultOf(guess, UnauthorizedLogin)
        self.assertEqual(budget.paused(), 1.0)
        checked = len(self.checks)
        self.failureResultOf(self.guess("127.0.9.200", PASSWORD.encode()))
        self.assertEqual(len(self.checks), checked)
        self.assertTrue(self.logged("password checks paused for 1 s"))
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertEqual(chan.status, 0)
        self.clock.advance(1)
        guess = self.guess("127.0.9.201")
        self.checks[-1].callback(False)
        self.failureResultOf(guess, UnauthorizedLogin)
        self.assertEqual(budget.paused(), 2.0)
        self.clock.advance(budget.window)
        right = self.guess("127.0.9.202", PASSWORD.encode())
        self.checks[-1].callback(True)
        self.successResultOf(right)


class DroppedConnectionTests(AdminSSHTestCase):
    """Lines queued behind a slow command die with the operator's connection."""

    def setUp(self) -> None:
        super().setUp()
        self.pending: Deferred = Deferred()
        self.ran: list[str] = []
        real_run = AdminCommands.run

        def run(commands: AdminCommands, line: str) -> Deferred:
            self.ran.append(line)
            if line == "requests":
                return self.pending
            return real_run(commands, line)

        self.patch(AdminCommands, "run", run)

    def drop_while_requests_is_pending(self, pty: bool) -> None:
        chan, client, pump = self.connect(key=self.root_key, pty=pty)
        chan.write(b"requests\rclose-server\r" if pty else b"requests\nclose-server\n")
        self.settle(pump)
        self.assertEqual(self.ran, ["requests"])
        client.transport.loseConnection()
        self.settle(pump)
        self.pending.callback(Result("#1  alice: more cowbell"))
        self.settle(pump)
        self.assertEqual(self.ran, ["requests"])
        self.assertIsNone(self.pool.countdown)
        self.assertEqual(self.stopped, [])

    def test_pty_shell(self) -> None:
        self.drop_while_requests_is_pending(pty=True)

    def test_shell_without_pty(self) -> None:
        self.drop_while_requests_is_pending(pty=False)


# -- partypool-root's trust on first use, against this server -------------------------


class FirstContactTests(AdminSSHTestCase):
    """A first-seen host key is remembered only once root has logged in."""

    def login(self, password: str) -> tuple[Deferred, HostKeyCheck, list[str]]:
        notes: list[str] = []
        check = HostKeyCheck(
            "127.0.6.1", 12346, None, self.known, notes.append, self.confirm_new
        )
        client = _AdminTransport(check, Credentials(password=password.encode()))
        ready = client.ready
        self.wire(client)
        return ready, check, notes

    def setUp(self) -> None:
        super().setUp()
        self.known = KnownServers(Path(self.mktemp()) / "known_admin_hosts")
        self.fingerprint = ssh_fingerprint(self.host_key)
        self.asked: list[str] = []

    def confirm_new(self, fingerprint: str) -> Deferred:
        self.asked.append(fingerprint)
        return defer.succeed(True)

    def test_an_unknown_key_is_refused_without_a_decision(self) -> None:
        """Issue 13.3: nobody to ask (``-c`` mode): a first-seen key is
        refused during key exchange; the password never leaves."""
        self.confirm_new = None  # type: ignore[assignment]
        ready, _, notes = self.login(PASSWORD)
        failure = self.failureResultOf(ready, HostKeyUnknown)
        self.assertIn(self.fingerprint, str(failure.value))
        self.assertFalse(self.logged("login"))
        self.assertIsNone(self.known.lookup("127.0.6.1", 12346))

    def test_a_failed_login_does_not_pin_the_key(self) -> None:
        ready, _, notes = self.login("guess")
        self.failureResultOf(ready, LoginRefused)
        self.assertIsNone(self.known.lookup("127.0.6.1", 12346))
        self.assertEqual(len(notes), 1)
        self.assertIn(self.fingerprint, notes[0])
        self.assertIn("remembered if the login succeeds", notes[0])

    def test_a_successful_login_pins_the_key(self) -> None:
        ready, _, notes = self.login(PASSWORD)
        self.successResultOf(ready)
        self.assertEqual(self.asked, [self.fingerprint])
        entry = self.known.lookup("127.0.6.1", 12346)
        self.assertIsNotNone(entry)
        self.assertEqual(entry.fingerprint, self.fingerprint)
        self.assertIn("Remembered the SSH host key", notes[-1])
        # Known from now on: no first-contact note, nothing appended.
        ready, _, notes = self.login(PASSWORD)
        self.successResultOf(ready)
        self.assertEqual(notes, [])
        self.assertEqual(len(self.known.path.read_text().splitlines()), 1)

    def test_a_different_remembered_key_is_still_refused_before_login(self) -> None:
        self.known.remember("127.0.6.1", 12346, "SHA256:" + "A" * 43)
        ready, _, _ = self.login(PASSWORD)
        self.failureResultOf(ready, HostKeyChanged)
        self.assertFalse(self.logged("root logged in"))

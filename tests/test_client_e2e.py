"""End to end: the real ``partypool-client`` (terminal and --script) against
the real ``twistd -n partypool`` on loopback. Every wait is bounded."""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest

from tests.conftest import server_env, start_server

pytestmark = pytest.mark.slow

# The test servers use 4096 PBKDF2 iterations (fast); the client allows it.
CLIENT = [sys.executable, "-m", "partypool.client", "--min-iterations", "4096"]
TIMEOUT = 15.0


def client_env(tmp_path: Path, passkey: str | None = None) -> dict[str, str]:
    extra = {
        "PARTYPOOL_KNOWN_SERVERS": str(tmp_path / "known_servers"),
        "PROMPT_TOOLKIT_NO_CPR": "1",
        "TERM": "xterm",
    }
    if passkey is not None:
        extra["PARTYPOOL_PASSKEY"] = passkey
    return server_env(**extra)


def at(server) -> list[str]:
    return ["--host", server.host, "--port", str(server.chat_port)]


def terminal(server, tmp_path: Path, name: str, **options: object) -> pexpect.spawn:
    """The terminal client in a pty, joining ``server`` as ``name`` with the
    passkey from the environment (``options``: pexpect's, such as the
    terminal's ``dimensions``)."""
    return pexpect.spawn(
        CLIENT[0],
        [*CLIENT[1:], *at(server), "--name", name],
        env=client_env(tmp_path, server.passkey),
        encoding="utf-8",
        timeout=TIMEOUT,
        **options,
    )


class ScriptClient:
    """``partypool-client --script`` with pipes; lines read by a thread so
    that every wait has a timeout."""

    def __init__(self, tmp_path: Path, passkey: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLIENT, "--script", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=client_env(tmp_path, passkey),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float = TIMEOUT) -> str:
        """The next stdout line starting with C{prefix} (others skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; stderr: {self.stderr()}")

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()


def script_client(tmp_path: Path, server, name: str) -> ScriptClient:
    """A --script client of C{server} named C{name}, passkey from the env."""
    return ScriptClient(tmp_path, server.passkey, *at(server), "--name", name)


def test_terminal_client(chat_server, tmp_path):
    """Host, passkey and name prompts, messages both ways, the /online box, an
    incoming line while one is half typed, /exit; the certificate is
    remembered on first use."""
    child = pexpect.spawn(
        CLIENT[0],
        CLIENT[1:],
        env=client_env(tmp_path),
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 100),
    )
    bob = None
    try:
        child.expect("Server address")
        child.sendline(f"{chat_server.host}:{chat_server.chat_port}")
        child.expect("Enter passkey:")
        child.sendline(chat_server.passkey)
        child.expect("username:")  # asked before connecting (issue 13.9)
        child.sendline("root")
        child.expect("Authenticated")
        child.expect("reserved")
        child.expect("username:")
        child.sendline("alice")
        child.expect("Connected as")
        child.expect(r"\$alice:")
        known = (tmp_path / "known_servers").read_text()
        assert f"127.0.0.1 {chat_server.chat_port} {chat_server.fingerprint}" in known

        bob = chat_server.client(source="127.0.0.2")
        bob.join(chat_server.passkey, "bob")
        child.expect("bob.{0,20} joined")

        child.send("hal")
        time.sleep(0.3)
        bob.send("SAY hi <b>alice</b>")
        child.expect("hi <b>alice</b>")
        # The prompt comes back with the half-typed text still there ...
        child.expect(r"\$alice:[^\n]{0,20}hal")
        child.send("f done\r")
        # ... and finishing the line sends all of it.
        assert bob.expect("CHAT") == "CHAT alice half done"

        child.sendline("/online")
        child.expect(r"ONLINE USERS \(2\)")
        child.expect("alice")
        child.expect("bob")
        child.expect("╚")
        child.sendline("/bogus")
        child.expect("/help")

        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert bob.expect("LEFT") == "LEFT alice quit"
    finally:
        child.close(force=True)
        if bob is not None:
            bob.close()


def test_script_chat_and_server_stop(chat_server, tmp_path):
    """--script prints server lines as they are; SIGTERM's BYE exits 0."""
    carol = script_client(tmp_path, chat_server, "carol")
    try:
        assert carol.expect("AUTHENTICATED")
        assert carol.expect("NAMED") == "NAMED carol"
        dave = chat_server.client(source="127.0.0.2")
        dave.join(chat_server.passkey, "dave")
        assert carol.expect("JOINED") == "JOINED dave"
        dave.send("SAY hello  \x1b[31mcarol")
        assert carol.expect("CHAT") == "CHAT dave hello  [31mcarol"
        carol.send("hi dave")
        assert dave.expect("CHAT") == "CHAT carol hi dave"
        carol.send("/online")
        assert carol.expect("ONLINE") == "ONLINE 2 carol dave"
        carol.send("/request more snacks")
        assert carol.expect("OK REQUEST").split()[2].isdigit()
        dave.close()
        assert chat_server.stop() == 0
        assert carol.expect("BYE") == "BYE server stopping"
        assert carol.wait() == 0
    finally:
        carol.wait()


def test_script_end_of_input_quits(chat_server, tmp_path):
    """Lines before EOF are sent, then QUIT; exit status 0."""
    erin = script_client(tmp_path, chat_server, "erin")
    erin.send("/ip")
    erin.process.stdin.close()
    assert erin.expect("IP") == "IP 127.0.0.1"
    assert erin.expect("BYE") == "BYE quit"
    assert erin.wait() == 0


def test_wrong_passkey(chat_server, tmp_path):
    """A wrong passkey is a clear message on stderr and a non-zero exit."""
    client = ScriptClient(tmp_path, "nope", *at(chat_server), "--name", "x")
    assert client.wait() == 1
    assert "wrong passkey" in client.stderr()


def test_changed_fingerprint_refused(chat_server, tmp_path):
    """A remembered fingerprint that no longer matches is refused loudly,
    naming the line to delete."""
    known = tmp_path / "known_servers"
    known.write_text(f"127.0.0.1 {chat_server.chat_port} {'AB:' * 31}AB\n")
    client = script_client(tmp_path, chat_server, "x")
    assert client.wait() == 1
    stderr = client.stderr()
    assert "CERTIFICATE HAS CHANGED" in stderr
    assert chat_server.fingerprint in stderr
    assert f"delete line 1 of\n  {known}" in stderr


def test_reconnect_after_server_crash(tmp_path):
    """A connection lost without BYE is re-established with the same name
    once the server is back."""
    server = start_server(tmp_path / "data")
    client = script_client(tmp_path, server, "frank")
    again = None
    try:
        assert client.expect("NAMED") == "NAMED frank"
        server.process.kill()
        server.process.wait()
        again = start_server(
            tmp_path / "data", "--chat", f"tcp:{server.chat_port}:interface=127.0.0.1"
        )
        assert client.expect("REJOINED", timeout=30) == "REJOINED frank"
        client.send("/online")
        assert client.expect("ONLINE") == "ONLINE 1 frank"
        client.process.stdin.close()
        assert client.wait() == 0
    finally:
        client.wait()
        if again is not None:
            again.stop()


@pytest.fixture
def admin_server(tmp_path):
    """A server whose admin port accepts a fresh key, and a way to run one
    root command over ssh."""
    ssh = shutil.which("ssh")
    keygen = shutil.which("ssh-keygen")
    if ssh is None or keygen is None:
        pytest.skip("needs the OpenSSH client")
    key = tmp_path / "root_key"
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "authorized_keys").write_text((tmp_path / "root_key.pub").read_text())
    server = start_server(data, admin=True)

    def root(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                ssh,
                *("-i", str(key), "-p", str(server.admin_port)),
                *("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"),
                *("-o", f"UserKnownHostsFile={tmp_path / 'ssh_known_hosts'}"),
                f"root@{server.host}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    yield server, root
    if server.process.poll() is None:
        server.stop()


def test_kicked_exits_2(admin_server, tmp_path):
    """Removed by the administrator: BYE shown, exit status 2."""
    server, root = admin_server
    gus = script_client(tmp_path, server, "gus")
    try:
        assert gus.expect("NAMED") == "NAMED gus"
        result = root("remove -u gus")
        assert result.returncode == 0, result.stderr
        assert gus.expect("BYE") == "BYE removed by admin"
        assert gus.wait() == 2
    finally:
        gus.wait()


def test_shutdown_countdown(admin_server, tmp_path):
    """close-server -t: SHUTDOWN countdown lines, then BYE, exit 0."""
    server, root = admin_server
    hal = script_client(tmp_path, server, "hal")
    try:
        assert hal.expect("NAMED") == "NAMED hal"
        result = root('close-server -t 3 -m "maintenance"')
        assert result.returncode == 0, result.stderr
        assert hal.expect("SHUTDOWN") == "SHUTDOWN 3 maintenance"
        assert hal.expect("SHUTDOWN") == "SHUTDOWN 2 maintenance"
        assert hal.expect("BYE", timeout=10) == "BYE maintenance"
        assert hal.wait() == 0
    finally:
        hal.wait()


def test_terminal_shutdown_countdown(admin_server, tmp_path):
    """The terminal shows the countdown and the reason, and exits 0."""
    server, root = admin_server
    child = terminal(server, tmp_path, "ida")
    try:
        child.expect(r"\$ida:")
        assert root('close-server -t 2 -m "back soon"').returncode == 0
        child.expect("closes in 2 s: back soon")
        child.expect("Disconnected by the server: back soon")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)


def test_invite(chat_server, tmp_path):
    """An invite opened with the passkey gives host, port and pin; a wrong
    passkey cannot open it."""
    from partypool.invite import Invite, seal_invite

    invite = Invite(
        host=chat_server.host,
        chat_port=chat_server.chat_port,
        admin_port=None,
        tls=True,
        tls_fingerprint=chat_server.fingerprint,
        ssh_fingerprint=None,
        server_name="Test Pool",
    )
    path = tmp_path / "party.invite"
    path.write_bytes(seal_invite(invite, chat_server.passkey, iterations=1000))
    jo = ScriptClient(
        tmp_path, chat_server.passkey, "--invite", str(path), "--name", "jo"
    )
    assert jo.expect("NAMED") == "NAMED jo"
    jo.process.stdin.close()
    assert jo.wait() == 0
    # Pinned, not trusted on first use: no fingerprint kept, only the count.
    known = (tmp_path / "known_servers").read_text()
    assert known == f"127.0.0.1 {chat_server.chat_port} - iterations=4096\n"

    wrong = ScriptClient(tmp_path, "nope", "--invite", str(path), "--name", "x")
    assert wrong.wait() == 1
    assert "wrong passkey or damaged invite" in wrong.stderr()


def test_insecure_plain(tmp_path):
    """--insecure-plain reaches a --no-tls server, with a warning."""
    server = start_server(tmp_path / "data", "--no-tls")
    try:
        kim = ScriptClient(
            tmp_path, server.passkey, *at(server), "--insecure-plain", "--name", "kim"
        )
        assert kim.expect("NAMED") == "NAMED kim"
        kim.process.stdin.close()
        assert kim.wait() == 0
        assert "WARNING: plain TCP" in kim.stderr()
    finally:
        server.stop()


@pytest.mark.parametrize("key", ["c", "d"])
def test_terminal_ctrl_c_and_ctrl_d_leave(chat_server, tmp_path, key):
    """Ctrl-C and Ctrl-D at the chat prompt say QUIT and exit 0."""
    child = terminal(chat_server, tmp_path, "lee")
    try:
        child.expect(r"\$lee:")
        child.sendcontrol(key)
        child.expect("Bye!")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)


def test_relay_in_the_middle_is_refused_and_not_pinned(chat_server, tmp_path):
    """Issue 13.1: a real TLS relay with its own certificate forwards every
    byte between the real client and the real server. SCRAM-SHA-256-PLUS
    binds the proof to the relay's certificate, so the server refuses it:
    the client says so, shows nothing from the room, and pins nothing."""
    from tests.tls_relay import TLSRelay

    relay = TLSRelay(tmp_path, chat_server.host, chat_server.chat_port)
    try:
        eve = ScriptClient(
            tmp_path,
            chat_server.passkey,
            "--host",
            "127.0.0.1",
            "--port",
            str(relay.port),
            "--name",
            "eve",
        )
        assert eve.wait() == 1
        stderr = eve.stderr()
        assert "relaying the connection" in stderr
        assert not (tmp_path / "known_servers").exists()
        assert eve.process.stdout.read() == ""
        assert relay.connections == 1
        assert any(
            line.startswith(b"AUTH SCRAM-SHA-256-PLUS ") for line in relay.forwarded
        )
        # The server saw a wrong proof, not a login.
        chat_server.wait_for(r"login failed from 127\.0\.0\.1")
    finally:
        relay.close()


def test_direct_login_pins_after_binding(chat_server, tmp_path):
    """The same client straight to the server: the channel-bound login
    succeeds and the certificate is remembered with the iteration count."""
    ann = script_client(tmp_path, chat_server, "ann")
    try:
        assert ann.expect("NAMED") == "NAMED ann"
        ann.process.stdin.close()
        assert ann.wait() == 0
    finally:
        ann.wait()
    known = (tmp_path / "known_servers").read_text()
    assert known == (
        f"127.0.0.1 {chat_server.chat_port} {chat_server.fingerprint} iterations=4096\n"
    )


# -- issue 13.5-13.8: hostile servers, encodings, pastes ------------------------------


def test_unproven_server_lines_never_shown(tmp_path):
    """Issue 13.5: a fake server that never proves the passkey sends a
    NOTICE with a link, a CHAT from a look-alike root and a SHUTDOWN: the real
    client prints none of it and says the server is not to be trusted."""
    from tests.fake_chat_server import FakeChatServer

    fake = FakeChatServer(
        "whatever",
        before_login=[
            "NOTICE [root] The passkey changed, get the new invite at http://evil.example",
            "CHAT root\u200b the passkey changed",
            "SHUTDOWN 5 go to http://evil.example",
            "ERR auth-failed get the new invite at http://evil.example",
        ],
    )
    client = ScriptClient(
        tmp_path,
        "a passkey",
        "--host",
        "127.0.0.1",
        "--port",
        str(fake.port),
        "--insecure-plain",
        "--name",
        "x",
    )
    assert client.wait() == 1
    assert client.process.stdout.read() == ""
    stderr = client.stderr()
    assert "wrong passkey" in stderr
    assert "evil" not in stderr and "NOTICE" not in stderr


@pytest.mark.parametrize(
    "env",
    [
        {"PYTHONIOENCODING": "cp1252"},
        {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
    ],
    ids=["cp1252", "C-locale"],
)
def test_hostile_lines_and_unencodable_text(tmp_path, env):
    """Issues 13.6 and 13.7: after a genuine login, ``SHUTDOWN ²``,
    ``OK REQUEST ³``, an unknown verb and a message the output encoding
    cannot show (``café 😀``) cost nothing: the line that can be shown is,
    with replacements, the session goes on, and the next message arrives."""
    from tests.fake_chat_server import FakeChatServer

    fake = FakeChatServer(
        PASSKEY_FOR_FAKE,
        after_join=[
            "SHUTDOWN \u00b2 soon",
            "OK REQUEST \u00b3",
            "FROBNICATE 1 2 3",
            "CHAT bob caf\u00e9 \U0001f600",
            "CHAT bob still here",
        ],
    )
    process = subprocess.Popen(
        [
            *CLIENT,
            "--script",
            "--history",
            "0",
            "--host",
            "127.0.0.1",
            "--port",
            str(fake.port),
            "--insecure-plain",
            "--name",
            "zoe",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**client_env(tmp_path, PASSKEY_FOR_FAKE), **env},
    )
    try:
        out, err = process.communicate(b"hello\n", timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    lines = out.decode("ascii", "replace").splitlines()
    assert "CHAT bob still here" in lines
    assert any(line.startswith("CHAT bob caf") and line.endswith("?") for line in lines)
    assert not any(line.startswith("SHUTDOWN") for line in lines)
    assert b"Traceback" not in err
    assert fake.done.wait(TIMEOUT)
    assert "SAY hello" in fake.received and fake.received[-1] == "QUIT"


PASSKEY_FOR_FAKE = "fake server passkey"


def test_terminal_paste_is_never_a_protocol_line(chat_server, tmp_path):
    """Issue 13.8: pasting ``first line⏎quit second line`` (bracketed
    paste, as terminals send it) and Enter: the room sees two messages and
    the user stays; the same for CR, and for NEL and U+2028 typed in."""
    child = terminal(chat_server, tmp_path, "pam", dimensions=(40, 100))
    bob = chat_server.client(source="127.0.0.2")
    try:
        child.expect(r"\$pam:")
        bob.join(chat_server.passkey, "bob")
        child.expect("bob.{0,20} joined")
        child.send("\x1b[200~first line\nquit second line\x1b[201~")
        child.send("\r")
        assert bob.expect("CHAT") == "CHAT pam first line"
        assert bob.expect("CHAT") == "CHAT pam quit second line"
        child.send("\x1b[200~one\rQUIT two\x1b[201~\r")
        assert bob.expect("CHAT") == "CHAT pam one"
        assert bob.expect("CHAT") == "CHAT pam QUIT two"
        child.send("three\u2028QUIT four\r")
        assert bob.expect("CHAT") == "CHAT pam three"
        assert bob.expect("CHAT") == "CHAT pam QUIT four"
        child.sendline("/online")
        child.expect(r"ONLINE USERS \(2\)")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        assert bob.expect("LEFT") == "LEFT pam quit"
    finally:
        child.close(force=True)
        bob.close()


def test_clear_errors_for_common_mistakes(tmp_path):
    """Issue 13.11: TLS against a --no-tls server, --insecure-plain against
    a TLS server (no 30 s hang), and a server that is not Party Pool each get
    one clear sentence saying what to do."""
    import socket

    plain = start_server(tmp_path / "plain", "--no-tls")
    tls = start_server(tmp_path / "tls")
    banner = socket.create_server(("127.0.0.1", 0))
    banner.settimeout(120)  # its turn comes after the two slower cases

    def say_ssh() -> None:
        with banner:
            conn, _ = banner.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                conn.recv(100)

    threading.Thread(target=say_ssh, daemon=True).start()
    try:
        cases = [
            ([*at(plain)], "does not speak TLS", "--insecure-plain"),
            (
                [*at(tls), "--insecure-plain"],
                "did not greet us",
                "drop --insecure-plain",
            ),
            (
                [
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(banner.getsockname()[1]),
                    "--insecure-plain",
                ],
                "not a Party Pool chat port",
                "SSH-2.0-OpenSSH",
            ),
        ]
        for args, what, hint in cases:
            started = time.monotonic()
            client = ScriptClient(tmp_path, PASSKEY_FOR_FAKE, *args, "--name", "x")
            assert client.wait(timeout=20) == 1
            stderr = client.stderr()
            assert what in stderr and hint in stderr, stderr
            assert "Traceback" not in stderr and "SSL routines" not in stderr
            assert time.monotonic() - started < 20
    finally:
        plain.stop()
        tls.stop()


def test_terminal_history_private_and_root_on_the_chat_port(tmp_path):
    """Issue 14, the clients, in a pty against the real twistd: a late
    joiner sees the last messages dimmed between two rules, every line has
    its time, /msg goes both ways and is shown as private; ``--root`` joins as
    root, sees a request as it is filed, mutes with /mute and kicks with
    /kick."""
    password_file = tmp_path / "root-password"
    password_file.write_text("e2e root password\n")
    password_file.chmod(0o600)
    server = start_server(
        tmp_path / "data", "--root-password-file", str(password_file), "--no-admin"
    )
    alice = server.client(source="127.0.0.2")
    bob = server.client(source="127.0.0.3")
    tom = root = None
    try:
        alice.join(server.passkey, "alice")
        bob.join(server.passkey, "bob")
        alice.send("SAY said before tom came")
        assert bob.expect("CHAT") == "CHAT alice said before tom came"

        tom = terminal(server, tmp_path, "tom", dimensions=(40, 120))
        tom.expect("──── the last message ────")
        # Fragments are separated by colour codes: allow a few between them.
        tom.expect(r"\d\d:\d\d .{0,20}\$alice: said before tom came")
        tom.expect("──── live ────")
        alice.send("MSG tom psst, only you")
        assert alice.expect("OK MSG") == "OK MSG tom"
        tom.expect(
            r"\d\d:\d\d .{0,20}🔒 .{0,20}alice.{0,20} → you: .{0,20}psst, only you"
        )
        tom.sendline("/msg ALICE right back")
        assert alice.expect("PRIVATE") == "PRIVATE tom right back"
        tom.expect("🔒 you → .{0,20}alice.{0,20}: .{0,20}right back")

        root = pexpect.spawn(
            CLIENT[0],
            [*CLIENT[1:], *at(server), "--root"],
            env={
                **client_env(tmp_path / "root-home"),
                "PARTYPOOL_ROOT_PASSWORD": "e2e root password",
            },
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(40, 120),
        )
        root.expect(r"\$root:")
        assert bob.expect("JOINED") == "JOINED tom"
        assert bob.expect("JOINED") == "JOINED root"
        root.sendline("/help")
        root.expect("/kick <name>")
        bob.send("REQUEST more snacks please")
        request_id = bob.expect("OK REQUEST").split(" ")[2]
        root.expect(
            f"📨 request #{request_id} from .{{0,20}}bob.{{0,20}}: .{{0,20}}more snacks"
        )
        root.sendline("/mute bob 60")
        root.expect("muted bob for 60 s")
        bob.send("SAY am I heard?")
        assert bob.expect("ERR").startswith("ERR muted")
        root.sendline("/kick alice")
        assert alice.expect("BYE") == "BYE removed by admin"
        tom.expect("alice.{0,20} left \\(removed by admin\\)")
        root.sendline("/exit")
        root.expect(pexpect.EOF)
        tom.sendline("/exit")
        tom.expect(pexpect.EOF)
    finally:
        for child in (tom, root):
            if child is not None:
                child.close(force=True)
        alice.close()
        bob.close()
        server.stop()

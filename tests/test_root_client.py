"""End to end: ``partypool-root`` (conch's SSH client, no OpenSSH binary)
administers a real ``twistd -n partypool`` on loopback.

One server serves most of the module (the root password, and two authorized
keys, one of them encrypted);
each test runs the client as a subprocess with its own known-hosts file.
Every wait is bounded.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pexpect
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from partypool.identity import host_key_fingerprint
from partypool.invite import Invite, seal_invite
from tests.conftest import RunningServer, server_env, start_server
from tests.wire_client import WireClient

pytestmark = pytest.mark.slow

ROOT = [sys.executable, "-m", "partypool.client.root"]
ROOT_PASSWORD = "correct root password"
KEY_PASSPHRASE = "key passphrase"
TIMEOUT = 30
#: Not a real server's key: a valid fingerprint no server here has.
OTHER_FINGERPRINT = "SHA256:" + "A" * 43
#: prompt_toolkit draws the prompt's trailing space as a cursor move.
PROMPT = r"root@partypool>"


def write_key(path: Path, passphrase: bytes | None = None) -> str:
    """An Ed25519 key in OpenSSH format; returns the public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode("ascii") + " root@test\n"


def at(server: RunningServer, tmp_path: Path) -> list[str]:
    """Arguments naming the server's admin port and a per-test known-hosts file."""
    return [
        *("--host", server.host, "--port", str(server.admin_port)),
        *("--known-hosts", str(tmp_path / "known_admin_hosts")),
    ]


@attrs.define
class Admin:
    """The live server (two chat users logged in) and the root keys it takes."""

    server: RunningServer
    key: Path
    locked_key: Path  # encrypted with KEY_PASSPHRASE
    fingerprint: str

    def run(
        self,
        tmp_path: Path,
        *args: str,
        password: str | None = ROOT_PASSWORD,
        stdin: str = "",
        accept_new: bool = True,
        **env: str,
    ) -> subprocess.CompletedProcess:
        """``partypool-root --host … --port … ARGS`` with no terminal (a
        first-seen host key trusted by the flag unless C{accept_new} is
        false)."""
        if password is not None:
            env["PARTYPOOL_ROOT_PASSWORD"] = password
        flags = ["--accept-new-host-key"] if accept_new else []
        return subprocess.run(
            [*ROOT, *at(self.server, tmp_path), *flags, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=server_env(**env),
        )

    def new_log(self) -> str:
        """Server log lines that arrived since the last call, after a moment
        for lines still in the pipe."""
        time.sleep(0.5)
        seen = len(self.server.lines)
        self.server.output()
        return "\n".join(self.server.lines[seen:])


def start_admin_server(data: Path) -> RunningServer:
    """A plain-TCP server whose admin port takes ROOT_PASSWORD."""
    password_file = data.parent / "root-password"
    password_file.write_text(ROOT_PASSWORD + "\n")
    password_file.chmod(0o600)
    return start_server(
        data, "--no-tls", "--root-password-file", str(password_file), admin=True
    )


def spawn_root(args: list[str], **env: str) -> pexpect.spawn:
    """``partypool-root ARGS`` on a pseudo-terminal."""
    return pexpect.spawn(
        ROOT[0],
        [*ROOT[1:], *args],
        env=server_env(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", **env),
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 100),
    )


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """One server for the module, with alice (127.0.0.2) and bob (127.0.0.3)
    chatting, so list-conn has something to show."""
    tmp = tmp_path_factory.mktemp("root")
    data = tmp / "data"
    data.mkdir(mode=0o700)
    key = tmp / "root_key"
    locked = tmp / "locked_key"
    (data / "authorized_keys").write_text(
        write_key(key) + write_key(locked, KEY_PASSPHRASE.encode())
    )
    server = start_admin_server(data)
    clients: list[WireClient] = []
    try:
        for name, source in (("alice", "127.0.0.2"), ("bob", "127.0.0.3")):
            client = WireClient(server.host, server.chat_port, tls=False, source=source)
            client.join(server.passkey, name)
            clients.append(client)
        clients[0].expect("JOINED bob")
        yield Admin(
            server, key, locked, host_key_fingerprint(data / "ssh" / "host_key")
        )
    finally:
        for client in clients:
            client.close()
        if server.process.poll() is None:
            server.stop()


def connections(stdout: str) -> list[tuple[str, str]]:
    """(address without port, name) per ``list-conn`` row."""
    rows = [line.split() for line in stdout.splitlines()]
    return [(row[0].rsplit(":", 1)[0], row[1]) for row in rows]


def test_one_command_lists_both_users(admin: Admin, tmp_path: Path) -> None:
    """``-c list-conn`` prints the two chat users and exits 0; the host key
    seen for the first time is remembered with a note on stderr."""
    result = admin.run(tmp_path, "-c", "list-conn")
    assert result.returncode == 0, result.stderr
    assert connections(result.stdout) == [
        ("127.0.0.2", "alice"),
        ("127.0.0.3", "bob"),
    ]
    known = (tmp_path / "known_admin_hosts").read_text()
    assert known == f"127.0.0.1 {admin.server.admin_port} {admin.fingerprint}\n"
    assert "Remembered the SSH host key" in result.stderr


def test_failing_command_exits_1(admin: Admin, tmp_path: Path) -> None:
    """The remote exit status is ours: a command that fails exits 1 with the
    server's message."""
    result = admin.run(tmp_path, "-c", "remove -u nobody")
    assert (result.returncode, result.stdout) == (1, "no user named nobody\n")


def test_commands_from_stdin(admin: Admin, tmp_path: Path) -> None:
    """Without -c and without a terminal, each line of stdin is a command;
    the exit status is the last one's, and ``exit`` stops reading."""
    result = admin.run(
        tmp_path, stdin="list-conn -u\n\nremove -u nobody\nexit\nstats\n"
    )
    assert (result.returncode, result.stdout) == (
        1,
        "alice\nbob\nno user named nobody\n",
    ), result.stderr


def test_chat_port_named_as_such(admin: Admin, tmp_path: Path) -> None:
    """Newcomer 2, finding 12: pointed at the chat port (here without TLS,
    so it greets first), partypool-root says it looks like the chat port and
    names the admin port's default; nothing ran (255)."""
    # The last --port wins over the admin port that run() names.
    result = admin.run(
        tmp_path, "-c", "list-conn", "--port", str(admin.server.chat_port)
    )
    assert result.returncode == 255
    assert "greeted with 'HELLO partypool/1" in result.stderr
    assert "this looks like the chat port" in result.stderr
    assert "(default 12346)" in result.stderr


def test_wrong_password_refused(admin: Admin, tmp_path: Path) -> None:
    """A wrong password: a clear message and exit 255, nothing run."""
    result = admin.run(tmp_path, "-c", "list-conn", password="not the password")
    assert result.returncode == 255
    assert result.stdout == ""
    assert "Permission denied" in result.stderr
    assert "password" in result.stderr
    assert "Traceback" not in result.stderr
    # A server that did not log us in does not get its host key pinned.
    assert not (tmp_path / "known_admin_hosts").exists()


def test_pinned_host_key(admin: Admin, tmp_path: Path) -> None:
    """--host-key-fingerprint: the right one logs in without touching the
    known-hosts file; a wrong one is refused before the password is sent
    (the server logs no login attempt at all)."""
    right = admin.run(
        tmp_path, "--host-key-fingerprint", admin.fingerprint, "-c", "list-conn -u"
    )
    assert (right.returncode, right.stdout) == (0, "alice\nbob\n"), right.stderr
    assert not (tmp_path / "known_admin_hosts").exists()

    admin.new_log()
    wrong = admin.run(
        tmp_path, "--host-key-fingerprint", OTHER_FINGERPRINT, "-c", "list-conn"
    )
    assert wrong.returncode == 255
    assert "HOST KEY HAS CHANGED" in wrong.stderr
    assert admin.fingerprint in wrong.stderr
    assert "login" not in admin.new_log()


def test_changed_host_key_refused(admin: Admin, tmp_path: Path) -> None:
    """A remembered key that differs from the server's is refused loudly,
    naming the line to delete."""
    known = tmp_path / "known_admin_hosts"
    known.write_text(
        f"# earlier servers\n127.0.0.1 {admin.server.admin_port} {OTHER_FINGERPRINT}\n"
    )
    result = admin.run(tmp_path, "-c", "list-conn")
    assert result.returncode == 255
    assert "HOST KEY HAS CHANGED" in result.stderr
    assert f"delete line 2 of\n  {known}" in result.stderr
    assert result.stdout == ""


def test_key_login(admin: Admin, tmp_path: Path) -> None:
    """--identity logs in with the authorized key; no password is needed."""
    result = admin.run(
        tmp_path, "--identity", str(admin.key), "-c", "list-conn -u", password=None
    )
    assert (result.returncode, result.stdout) == (0, "alice\nbob\n"), result.stderr
    assert "root logged in (key SHA256:" in admin.new_log()


def test_encrypted_key_asks_passphrase(admin: Admin, tmp_path: Path) -> None:
    """An encrypted --identity key: its passphrase is asked without echo; a
    wrong one stops before connecting."""

    def spawn() -> pexpect.spawn:
        return spawn_root(
            [*at(admin.server, tmp_path), "--identity", str(admin.locked_key)]
            + ["--accept-new-host-key", "-c", "list-conn -u"]
        )

    child = spawn()
    child.logfile_read = transcript = io.StringIO()
    try:
        child.expect("Passphrase for .*locked_key: ")
        child.sendline(KEY_PASSPHRASE)
        child.expect("alice\r\nbob\r\n")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert KEY_PASSPHRASE not in transcript.getvalue()  # not echoed
    finally:
        child.close(force=True)

    child = spawn()
    try:
        child.expect("Passphrase for ")
        child.sendline("wrong")
        child.expect("wrong passphrase for ")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 255
    finally:
        child.close(force=True)


def test_invite_pins_host_key(admin: Admin, tmp_path: Path) -> None:
    """--invite, opened with the chat passkey, gives host, admin port and
    the pinned host key."""
    invite = Invite(
        host=admin.server.host,
        chat_port=admin.server.chat_port,
        admin_port=admin.server.admin_port,
        tls=False,
        tls_fingerprint=None,
        ssh_fingerprint=admin.fingerprint,
        server_name="Test Pool",
    )
    path = tmp_path / "party.invite"
    path.write_bytes(seal_invite(invite, admin.server.passkey, iterations=1000))
    result = subprocess.run(
        [*ROOT, "--invite", str(path), "-c", "list-conn -u"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=server_env(
            PARTYPOOL_PASSKEY=admin.server.passkey,
            PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD,
            PARTYPOOL_KNOWN_ADMIN_HOSTS=str(tmp_path / "known_admin_hosts"),
        ),
    )
    assert (result.returncode, result.stdout) == (0, "alice\nbob\n"), result.stderr
    assert not (tmp_path / "known_admin_hosts").exists()  # pinned, not TOFU


def test_interactive_shell(admin: Admin, tmp_path: Path) -> None:
    """The shell on a terminal: a hidden password prompt, a command's output,
    history (Up recalls the last line), and ``exit`` exits 0."""
    child = spawn_root(at(admin.server, tmp_path))
    child.logfile_read = transcript = io.StringIO()
    try:
        # A first-seen host key: shown, and asked about (issue 13.3) ...
        child.expect(admin.fingerprint.replace("+", r"\+"))
        child.expect(r"continue connecting \(yes/no\)\? ")
        child.sendline("yes")
        # ... and the password asked only then (issue 13.12).
        child.expect("root password: ")
        child.sendline(ROOT_PASSWORD)
        child.expect(PROMPT)
        child.sendline("list-conn -u")
        child.expect("alice")
        child.expect("bob")
        child.expect(PROMPT)
        child.send("\x1b[A")  # Up: the previous line again
        child.expect("list-conn -u")
        child.send("\r")
        child.expect("bob")
        child.expect(PROMPT)
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert ROOT_PASSWORD not in transcript.getvalue()  # not echoed
    finally:
        child.close(force=True)


def test_shell_ends_when_server_stops(tmp_path: Path) -> None:
    """A shell waiting for a line notices the server going away: it says
    so and exits 255 instead of hanging."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    server = start_admin_server(data)
    try:
        child = spawn_root(
            [*at(server, tmp_path), "--accept-new-host-key"],
            PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD,
        )
        try:
            child.expect(PROMPT)
            child.sendline("stats")
            child.expect("uptime")
            child.expect(PROMPT)
            assert server.stop() == 0
            child.expect("the connection to the server was lost")
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 255
        finally:
            child.close(force=True)
    finally:
        if server.process.poll() is None:
            server.stop()


# -- issue 13.3 and 13.12: an impostor, the password's moment, the prompt -------------


@attrs.define
class Impostor:
    """tests/impostor_ssh.py: takes any password and writes it down."""

    process: subprocess.Popen
    directory: Path
    port: int
    fingerprint: str

    def passwords(self) -> str:
        path = self.directory / "passwords"
        return path.read_text() if path.exists() else ""

    def args(self, tmp_path: Path) -> list[str]:
        return [
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--known-hosts", str(tmp_path / "known_admin_hosts")),
        ]


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[Impostor]:
    directory = tmp_path / "impostor"
    directory.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.impostor_ssh", str(directory)],
        env=server_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (directory / "port").exists():
            assert time.monotonic() < deadline, "the impostor did not start"
            assert process.poll() is None, "the impostor died"
            time.sleep(0.05)
        yield Impostor(
            process,
            directory,
            int((directory / "port").read_text()),
            (directory / "fingerprint").read_text(),
        )
    finally:
        process.kill()
        process.wait()


def test_impostor_gets_no_password_in_command_mode(
    impostor: Impostor, tmp_path: Path
) -> None:
    """``-c`` with no pin, no invite and an unknown host key: refused before
    the password goes out, with the fingerprint and the ways to trust it;
    nothing is remembered."""
    result = subprocess.run(
        [*ROOT, *impostor.args(tmp_path), "-c", "list-conn"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=server_env(PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD),
    )
    assert result.returncode == 255
    assert impostor.fingerprint in result.stderr
    assert "--accept-new-host-key" in result.stderr
    assert impostor.passwords() == ""
    assert not (tmp_path / "known_admin_hosts").exists()


def test_impostor_refused_at_the_question(impostor: Impostor, tmp_path: Path) -> None:
    """In the shell the fingerprint is shown and asked about; anything but
    "yes" stops before the password is even asked for."""
    child = spawn_root(impostor.args(tmp_path))
    try:
        child.expect(impostor.fingerprint.replace("+", r"\+"))
        child.expect(r"\(yes/no\)\? ")
        child.sendline("no")
        child.expect("not trusted")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 255
        assert "root password" not in child.before
    finally:
        child.close(force=True)
    assert impostor.passwords() == ""


def test_admin_output_cannot_drive_the_terminal(
    impostor: Impostor, tmp_path: Path
) -> None:
    """Trusted by mistake, the impostor's output still cannot set the
    window title or the clipboard: ESC, BEL, C1 and CR are stripped, newline
    and tab kept."""
    result = subprocess.run(
        [*ROOT, *impostor.args(tmp_path), "--accept-new-host-key", "-c", "x"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=server_env(PARTYPOOL_ROOT_PASSWORD="a password"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "pwned]0;owned title ]52;c;ZWNobyBwd25lZA==31mred[2J\ttab\nnext line\n"
    )


def test_password_asked_after_connecting(tmp_path: Path) -> None:
    """Issue 13.12: a wrong port is reported before any password is asked."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    child = spawn_root(
        ["--host", "127.0.0.1", "--port", str(free_port), "-c", "list-conn"]
    )
    try:
        child.expect("cannot connect")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 255
        assert "password" not in child.before
    finally:
        child.close(force=True)


def test_missing_host_is_asked(admin: Admin, tmp_path: Path) -> None:
    """Issue 13.12: without --host or an invite, the host is asked as
    partypool-client asks it, and the shell's prompt is the server's own."""
    from partypool.admin.shell import PROMPT as SERVER_PROMPT
    from partypool.client.root import PROMPT as CLIENT_PROMPT

    assert CLIENT_PROMPT.encode() == SERVER_PROMPT
    child = spawn_root(
        [
            *("--known-hosts", str(tmp_path / "known_admin_hosts")),
            "--accept-new-host-key",
        ],
        PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD,
    )
    try:
        child.expect(r"Admin \(SSH\) address")
        child.sendline(f"{admin.server.host}:{admin.server.admin_port}")
        child.expect(PROMPT)
        child.sendline("list-conn -u")
        child.expect("alice")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)

"""Operations against the real ``twistd -n partypool`` process: socket
activation, readiness, certificate reload on SIGHUP, and SIGTERM mid-chat."""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import ssl
import threading
import time
from pathlib import Path

import pytest

from partypool.tls import ensure_self_signed
from tests.conftest import (
    PASSKEY,
    RunningServer,
    server_env,
    spawn,
    start_server,
    twistd_command,
)
from tests.test_ops import install
from tests.wire_client import WireClient

pytestmark = pytest.mark.slow

ROOT_PASSWORD = "root password for the admin port"


def free_port() -> int:
    """A port nobody listens on right now (for tools that cannot take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def irc_pong(port: int) -> list[bytes]:
    """The words of the IRC gateway's answer to ``PING x``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw) as sock:
        sock.sendall(b"PING x\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += sock.recv(512)
    return line.split()


def ssh_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(64)


def test_socket_activation_of_every_port(tmp_path):
    """systemd-style passed sockets (named chat, admin, irc and web) serve TLS
    chat, SSH, the IRC gateway and the page over HTTPS."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (CI installs systemd)")
    chat_port, admin_port = free_port(), free_port()
    irc_port, web_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    passkey_file = tmp_path / "passkey"
    passkey_file.write_text(PASSKEY)
    passkey_file.chmod(0o600)  # one others can read is refused
    env = server_env()
    # systemd-socket-activate passes on only the variables named with -E.
    variables = {
        "PYTHONPATH": env["PYTHONPATH"],
        "PYTHONUNBUFFERED": "1",
        "PATH": env.get("PATH", "/usr/bin:/bin"),
        "PARTYPOOL_ROOT_PASSWORD": ROOT_PASSWORD,
    }
    command = [
        tool,
        "-l",
        f"127.0.0.1:{chat_port}",
        "-l",
        f"127.0.0.1:{admin_port}",
        "-l",
        f"127.0.0.1:{irc_port}",
        "-l",
        f"127.0.0.1:{web_port}",
        "--fdname=chat:admin:irc:web",
        *(f"-E{name}={value}" for name, value in variables.items()),
        *twistd_command(
            data_dir,
            "--chat",
            "systemd:domain=INET:name=chat",
            "--admin",
            "systemd:domain=INET:name=admin",
            "--irc",
            "systemd:domain=INET:name=irc",
            "--web",
            "systemd:domain=INET:name=web",
            "--passkey-file",
            str(passkey_file),
        ),
    ]
    server = spawn(command, data_dir, PASSKEY, env, tmp_path)
    process = server.process
    try:
        server.wait_for(f"Listening on 127.0.0.1:{admin_port}")
        # The first connection starts twistd, as systemd would.
        client = WireClient("127.0.0.1", chat_port)
        fingerprint = server.wait_for(r"SHA-256 fingerprint (\S+)")[1]
        client.close()
        client = WireClient("127.0.0.1", chat_port, fingerprint=fingerprint)
        client.join(PASSKEY, "sam")
        client.send("ONLINE")
        assert client.expect("ONLINE") == "ONLINE 1 sam"
        assert server.wait_for(r"admin port listening on 127.0.0.1:(\d+)")[1] == str(
            admin_port
        )
        assert ssh_banner(admin_port).startswith(b"SSH-2.0-")
        assert server.wait_for(r"IRC gateway listening on 127.0.0.1:(\d+)")[1] == str(
            irc_port
        )
        assert irc_pong(irc_port)[1::2] == [b"PONG", b"x"]  # :server PONG server x
        assert server.wait_for(r"web door listening on 127.0.0.1:(\d+)")[1] == str(
            web_port
        )
        assert b"<title>Party Pool</title>" in https_get(web_port)
        assert server.stop() == 0
        assert client.expect("BYE") == "BYE server stopping"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def https_get(port: int) -> bytes:
    """The body of ``GET /`` over TLS (the self-signed certificate unchecked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        return b"".join(iter(lambda: sock.recv(65536), b""))


def states(sock: socket.socket, seen: list[bytes]) -> bytes:
    """The next notification other than WATCHDOG=1 (those are counted in seen)."""
    while (message := sock.recv(4096)) == b"WATCHDOG=1":
        seen.append(message)
    return message


def test_ready_once_both_ports_accept_and_stopping_on_sigterm(tmp_path):
    """READY=1 comes only when both ports take connections; then WATCHDOG, STOPPING."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    chat_port, admin_port = free_port(), free_port()
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "200000",
        "PARTYPOOL_ROOT_PASSWORD": ROOT_PASSWORD,
    }
    started: list[RunningServer] = []
    starter = threading.Thread(
        target=lambda: started.append(
            start_server(
                tmp_path / "data",
                "--chat",
                f"tcp:{chat_port}:interface=127.0.0.1",
                "--admin",
                f"tcp:{admin_port}:interface=127.0.0.1",
                admin=True,
                env=env,
            )
        )
    )
    starter.start()
    try:
        watchdog: list[bytes] = []
        assert states(sock, watchdog).startswith(b"READY=1\n")
        # Right away, before reading any log line: both ports must answer.
        client = WireClient("127.0.0.1", chat_port)
        assert client.hello.startswith("HELLO partypool/1 ")
        assert ssh_banner(admin_port).startswith(b"SSH-2.0-")
        starter.join(30)
        [server] = started
        time.sleep(0.3)
        server.signal(signal.SIGTERM)
        assert states(sock, watchdog).startswith(b"STOPPING=1\n")
        assert watchdog, "no WATCHDOG=1 although WATCHDOG_USEC was set"
        assert client.expect("BYE") == "BYE server stopping"
        assert server.stop() == 0
    finally:
        starter.join(30)
        for server in started:
            if server.process.poll() is None:
                server.process.kill()
        sock.close()


def test_sighup_reloads_certificate_for_new_connections_only(tmp_path):
    """After SIGHUP new clients see the new certificate; open sessions chat on."""
    first = ensure_self_signed(tmp_path / "first")
    second = ensure_self_signed(tmp_path / "second")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(first, cert, key)
    server = start_server(
        tmp_path / "data",
        "--allow-same-ip",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    try:
        old = server.fingerprint
        alice = WireClient(server.host, server.chat_port, fingerprint=old)
        alice.join(server.passkey, "alice")

        install(second, cert, key)
        server.signal(signal.SIGHUP)
        new = server.wait_for(r"reloaded: SHA-256 fingerprint (\S+)")[1]
        assert new != old
        bob = WireClient(server.host, server.chat_port, fingerprint=new)
        bob.join(server.passkey, "bob")
        alice.send("SAY still here")
        assert bob.expect("CHAT") == "CHAT alice still here"
        bob.send("SAY welcome")
        assert alice.expect("CHAT") == "CHAT bob welcome"

        cert.write_text("half-written renewal")
        server.signal(signal.SIGHUP)
        server.wait_for("TLS certificate kept, reload failed")
        carol = WireClient(server.host, server.chat_port, fingerprint=new)
        carol.join(server.passkey, "carol")
        assert server.process.poll() is None
        for client in (alice, bob, carol):
            client.close()
        assert server.stop() == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()


def hangup_handled(pid: int) -> bool:
    """Whether the process catches or ignores SIGHUP (from /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = [
        line.split()[1]
        for line in status.splitlines()
        if line[:6] in ("SigCgt", "SigIgn")
    ]
    return any(int(mask, 16) & (1 << (signal.SIGHUP - 1)) for mask in masks)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_sighup_at_every_moment_of_start_and_stop_is_harmless(tmp_path):
    """SIGHUP every 5 ms from the moment the process catches it (its handler
    shows in /proc: Python has only just started, twistd has not imported
    Twisted yet) until it listens, then while running and while stopping: the
    server starts, reloads the certificate once running, and exits 0 on
    SIGTERM."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    secret = tmp_path / "secret"
    secret.write_text(PASSKEY)
    secret.chmod(0o600)
    command = twistd_command(
        data_dir,
        "--passkey-file",
        str(secret),
        "--root-password-file",
        str(secret),
        "--chat",
        "tcp:0:interface=127.0.0.1",
        "--admin",
        "tcp:0:interface=127.0.0.1",
        "--no-web",
    )
    server = spawn(command, data_dir, PASSKEY, server_env(), tmp_path)
    try:
        pid = server.process.pid
        deadline = time.monotonic() + 30
        while not hangup_handled(pid) and time.monotonic() < deadline:
            assert server.process.poll() is None
            time.sleep(0.002)
        started = time.monotonic()
        while "admin port listening" not in server.output():
            assert server.process.poll() is None, server.output()
            assert time.monotonic() - started < 60, server.output()
            server.signal(signal.SIGHUP)
            time.sleep(0.005)
        server.wait_for("TLS certificate reloaded")
        for _ in range(3):
            server.signal(signal.SIGHUP)
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        for _ in range(10):
            if server.process.poll() is not None:
                break
            server.signal(signal.SIGHUP)
            time.sleep(0.02)
        assert server.process.wait(timeout=20) == 0, server.output()
        assert "SIGHUP while starting: reloading the certificate" in server.output()
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_sigterm_during_chat_says_bye_keeps_requests_and_exits_0(tmp_path):
    """SIGTERM mid-chat: BYE to all, the request just stored survives, exit 0 soon."""
    server = start_server(tmp_path / "data", "--allow-same-ip")
    alice = WireClient(server.host, server.chat_port, fingerprint=server.fingerprint)
    alice.join(server.passkey, "alice")
    bob = WireClient(server.host, server.chat_port, fingerprint=server.fingerprint)
    bob.join(server.passkey, "bob")
    alice.send("REQUEST a bigger pool")
    request_id = int(alice.expect("OK REQUEST").split()[2])
    bob.send("SAY splash")
    assert alice.expect("CHAT") == "CHAT bob splash"

    server.signal(signal.SIGTERM)
    for client in (alice, bob):
        assert client.expect("BYE") == "BYE server stopping"
        assert client.closed()
        client.close()
    assert server.process.wait(15) == 0

    database = sqlite3.connect(Path(tmp_path / "data" / "partypool.sqlite3"))
    row = database.execute(
        "SELECT name, text FROM requests WHERE id = ?", (request_id,)
    ).fetchone()
    database.close()
    assert row == ("alice", "a bigger pool")

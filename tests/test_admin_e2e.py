"""End to end: OpenSSH's ``ssh`` administers a real ``twistd -n partypool``.

Key login for the main path (``BatchMode``, the generated host key pinned in a
known_hosts file with ``StrictHostKeyChecking=yes``); password login through
``SSH_ASKPASS`` with no terminal.  Two chat clients (tests/wire_client.py)
see the admin's actions as protocol lines.  Loopback only, every wait bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from partypool.identity import host_key_fingerprint
from tests.conftest import REPO, server_env, start_server
from tests.wire_client import WireClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ssh"), reason="needs the OpenSSH client"),
]

SSH_TIMEOUT = 30
ROOT_PASSWORD = "correct root password"


@attrs.define
class Admin:
    """Runs ``ssh … root@127.0.0.1 <command>`` against the server under test."""

    port: int
    key: Path
    known_hosts: Path

    def argv(self, *options: str, user: str = "root") -> list[str]:
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
            "-p",
            str(self.port),
            *options,
            f"{user}@127.0.0.1",
        ]

    def run(self, command: str, user: str = "root") -> subprocess.CompletedProcess:
        options = (
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(self.key),
        )
        return subprocess.run(
            [*self.argv(*options, user=user), command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
        )

    def run_interactive(self, keys: bytes) -> subprocess.CompletedProcess:
        """A shell on a pty (``-tt`` forces one without a local terminal)."""
        options = ("-tt", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes")
        return subprocess.run(
            [*self.argv(*options, "-i", str(self.key))],
            input=keys,
            capture_output=True,
            timeout=SSH_TIMEOUT,
        )

    def run_with_password(
        self, password: str, command: str, tmp: Path
    ) -> subprocess.CompletedProcess:
        """Password login with no tty: ssh asks an SSH_ASKPASS script."""
        askpass = tmp / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
        askpass.chmod(0o700)
        env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
        env.pop("SSH_AUTH_SOCK", None)
        options = (
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
        )
        return subprocess.run(
            [*self.argv(*options), command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
            env=env,
            start_new_session=True,  # no controlling terminal: askpass is used
        )


def test_openssh_administers_a_live_server(tmp_path: Path) -> None:
    """list-conn, send, remove, a failing command, password login, close-server.

    The clients see NOTICE, BYE removed by admin / LEFT, SHUTDOWN and BYE, and
    the server process exits 0 after the countdown.
    """
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = tmp_path / "root_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        timeout=30,
    )
    (data / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    password_file = tmp_path / "root-password"
    password_file.write_text(ROOT_PASSWORD + "\n")
    password_file.chmod(0o600)

    server = start_server(
        data, "--no-tls", "--root-password-file", str(password_file), admin=True
    )
    clients: list[WireClient] = []
    try:
        host_key = data / "ssh" / "host_key"
        assert host_key.stat().st_mode & 0o777 == 0o600
        logged = server.wait_for(r"SSH host key fingerprint (SHA256:\S+)")[1]
        assert logged == host_key_fingerprint(host_key)
        public = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(host_key)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{server.admin_port} {public}\n")
        admin = Admin(server.admin_port, key, known_hosts)

        for name, source in (("alice", "127.0.0.2"), ("bob", "127.0.0.3")):
            client = WireClient(server.host, server.chat_port, tls=False, source=source)
            client.join(server.passkey, name)
            clients.append(client)
        alice, bob = clients
        alice.expect("JOINED bob")

        listing = admin.run("list-conn")
        assert listing.returncode == 0, listing.stderr
        rows = [line.split() for line in listing.stdout.splitlines()]
        assert [(r[0].rsplit(":", 1)[0], r[1]) for r in rows] == [
            ("127.0.0.2", "alice"),
            ("127.0.0.3", "bob"),
        ]

        sent = admin.run('send -all "party at eight"')
        assert (sent.returncode, sent.stdout) == (0, "sent to 2 users\n")
        assert alice.expect("NOTICE") == "NOTICE party at eight"
        assert bob.expect("NOTICE") == "NOTICE party at eight"

        removed = admin.run("remove -u bob")
        assert removed.returncode == 0, removed.stderr
        assert bob.expect("BYE") == "BYE removed by admin"
        assert bob.closed()
        assert alice.expect("LEFT") == "LEFT bob removed by admin"

        failed = admin.run("remove -u bob")
        assert (failed.returncode, failed.stdout) == (1, "no user named bob\n")

        wrong_user = admin.run("stats", user="admin")
        assert wrong_user.returncode == 255
        assert "Permission denied" in wrong_user.stderr

        wrong = admin.run_with_password("not the password", "stats", tmp_path)
        assert wrong.returncode == 255
        assert "Permission denied" in wrong.stderr
        right = admin.run_with_password(ROOT_PASSWORD, "list-conn -u", tmp_path)
        assert (right.returncode, right.stdout) == (0, "alice\n"), right.stderr

        interactive = admin.run_interactive(b"list-c\tbye\x7f\x7f\x7f-u\r\x04")
        assert interactive.returncode == 0, interactive.stderr
        assert b"root@partypool> " in interactive.stdout
        assert b"list-conn bye" in interactive.stdout  # completed, then edited
        assert b"alice\r\n" in interactive.stdout
        assert b"logout" in interactive.stdout

        closing = admin.run('close-server -t 2 -m "bye"')
        assert closing.returncode == 0, closing.stderr
        assert alice.expect("SHUTDOWN") == "SHUTDOWN 2 bye"
        assert alice.expect("SHUTDOWN") == "SHUTDOWN 1 bye"
        assert alice.expect("BYE") == "BYE bye"
        assert server.process.wait(timeout=20) == 0
        log = server.output()
        assert "root logged in (key SHA256:" in log
        assert "root logged in (password) from 127.0.0.1:" in log
        assert "ran 'remove -u bob': status 0" in log
        assert "admin login failed from 127.0.0.1" in log
    finally:
        for client in clients:
            client.close()
        if server.process.poll() is None:
            server.stop()


def proposal(ssh_vv: str) -> dict[str, list[str]]:
    """The server's KEXINIT as ``ssh -vv`` prints it ("peer server KEXINIT")."""
    section = ssh_vv.split("peer server KEXINIT proposal", 1)[1]
    offer: dict[str, list[str]] = {}
    for line in section.splitlines()[1:11]:
        name, _, value = line.removeprefix("debug2: ").partition(": ")
        offer[name] = value.split(",")
    return offer


def test_openssh_sees_only_modern_algorithms_and_logs_stay_quiet(
    tmp_path: Path,
) -> None:
    """``ssh -vv`` (also asking for compression, ``-C``) is offered only modern
    algorithms and no compression; an RSA key added to authorized_keys while
    the server runs logs in (rsa-sha2); each session logs three lines and no
    warning (--log-format journal); a client that puts a newline and ESC in a
    key algorithm or user name forges no journal entry."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    keys = {}
    for kind in ("ed25519", "rsa"):
        keys[kind] = tmp_path / f"root_{kind}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(keys[kind])],
            check=True,
            timeout=60,
        )
    (data / "authorized_keys").write_text(
        keys["ed25519"].with_suffix(".pub").read_text()
    )
    password_file = tmp_path / "root-password"
    password_file.write_text(ROOT_PASSWORD + "\n")
    password_file.chmod(0o600)
    server = start_server(
        data,
        "--no-tls",
        "--log-format",
        "journal",
        "--root-password-file",
        str(password_file),
        admin=True,
    )
    try:
        public = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(data / "ssh" / "host_key")],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{server.admin_port} {public}\n")
        admin = Admin(server.admin_port, keys["ed25519"], known_hosts)
        started = len(server.output().splitlines())

        verbose = subprocess.run(
            [
                *admin.argv("-vv", "-C", "-o", "BatchMode=yes", "-i", str(admin.key)),
                "stats",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
        )
        assert verbose.returncode == 0, verbose.stderr
        offer = proposal(verbose.stderr)
        assert offer["compression ctos"] == offer["compression stoc"] == ["none"]
        offered = ",".join(sum(offer.values(), []))
        for old in (
            "cbc",
            "3des",
            "hmac-sha1",
            "hmac-md5",
            "group14-sha1",
            "group1-",
            "group-exchange",
        ):
            assert old not in offered, old
        assert "curve25519-sha256" in offer["KEX algorithms"]
        assert "compression: none" in verbose.stderr

        refused = Admin(server.admin_port, keys["rsa"], known_hosts).run("stats")
        assert refused.returncode == 255
        with (data / "authorized_keys").open("a") as f:
            f.write(keys["rsa"].with_suffix(".pub").read_text())
        rsa = subprocess.run(
            [
                *Admin(server.admin_port, keys["rsa"], known_hosts).argv(
                    "-v",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-i",
                    str(keys["rsa"]),
                ),
                "list-conn",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
        )
        assert rsa.returncode == 0, rsa.stderr
        assert "rsa-sha2-512" in rsa.stderr

        hostile = subprocess.run(
            [sys.executable, "-m", "tests.ssh_hostile", str(server.admin_port)],
            cwd=REPO,
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert hostile.stdout == "failures 4\n", hostile.stderr
        server.wait_for("key algorithm not accepted")
        server.wait_for("malformed public key")
        server.wait_for(r"user b'root\\n<2>")
        assert server.stop() == 0
        lines = server.output().splitlines()[started:]
        odd = [line for line in lines if not re.match(r"<[0-7]>\[[\w.#-]+\] ", line)]
        assert odd == []
        sessions = [line for line in lines if line.startswith("<6>[partypool.admin#")]
        assert len(sessions) == 6, sessions  # two sessions: in, the command, out
        loud = [line for line in lines if line[:3] in ("<0>", "<1>", "<2>", "<3>")]
        assert loud == [], loud
        warnings = [line for line in lines if line.startswith("<4>")]
        assert all("admin login failed" in line for line in warnings), warnings
        assert len(warnings) == 5  # the RSA key before it was added, the hostile four
    finally:
        if server.process.poll() is None:
            server.stop()

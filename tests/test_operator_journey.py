"""The first-time operator's journey through ``partypool``, in a pty (issue 17,
"Done means"): start the server from the menu (it asks for the secrets and
offers generated ones), make packages that reach it from the menu (no port
asked), join as a client and as root from the menu, stop, start again
without questions, and run a second server from the same folder.

The only preparation is the settings file an operator may keep in the data
directory: loopback ports chosen by the system (never the defaults, so
parallel runs do not collide) and cheap PBKDF2.  Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pexpect
import pytest

from partypool import datadir
from partypool.invite import INVITE_FILENAME, open_invite, package_version
from tests.conftest import PASSKEY, server_env
from tests.wire_client import WireClient

pytestmark = pytest.mark.slow

TIMEOUT = 60
MENU = r"Enter your choice \(1-5\): "
PACKAGE_MENU = r"Enter your choice \(1-4\): "


def operator_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return server_env(
        HOME=str(home),
        XDG_DATA_HOME=str(tmp_path / "share"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PROMPT_TOOLKIT_NO_CPR="1",
        TERM="xterm",
        LANG="C.UTF-8",
    )


def partypool(tmp_path: Path, *args: str, **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "partypool", *args],
        cwd=str(tmp_path / "work"),
        env=dict(operator_env(tmp_path), **env),
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(50, 120),
    )
    return child


def prepare(tmp_path: Path, settings: str) -> Path:
    """The operator's working folder and data directory, whose settings file
    gives loopback ports chosen by the system; returns the data directory."""
    (tmp_path / "work").mkdir()
    data = tmp_path / "share" / "partypool"
    data.mkdir(mode=0o700, parents=True)
    (data / "partypool.toml").write_text(
        'chat = "tcp:0:interface=127.0.0.1"\nadmin = "tcp:0:interface=127.0.0.1"\n'
        + settings
    )
    return data


def test_first_time_operator(tmp_path: Path) -> None:
    # The default PBKDF2 count: our clients refuse fewer (issue 13.2).
    data = prepare(tmp_path, 'web = "tcp:0:interface=127.0.0.1"\n')
    server = partypool(tmp_path)
    helper = others = None
    try:
        # 1. Start Server: both secrets asked, generated ones taken and kept.
        server.expect(MENU)
        server.sendline("1")
        server.expect(r"A strong passkey, generated for you: (\S+)")
        passkey = server.match[1]
        server.expect(r"Passkey \(Enter: the generated one\): ")
        server.sendline("")
        server.expect(r"so the next start does not ask\? \[Y/n\] ")
        server.sendline("")
        server.expect(r"A strong root password, generated for you: (\S+)")
        root_password = server.match[1]
        server.expect(r"Root password \(Enter")
        server.sendline("")
        server.expect(r"\[Y/n\] ")
        server.sendline("y")
        server.expect(r"Chat address:  127\.0\.0\.1:(\d+)")
        chat_port = int(server.match[1])
        server.expect(r"Admin \(SSH\):   port (\d+)")
        server.expect(rf"Invite:        {re.escape(str(data / INVITE_FILENAME))}")
        server.expect("Join here:")
        assert chat_port != 12345

        # 2. Packages, from a second menu: which, which format, the host
        # offered from the server's record; no port, no passkey asked.
        helper = partypool(tmp_path)
        helper.expect(MENU)
        helper.sendline("2")
        helper.expect(PACKAGE_MENU)
        helper.sendline("3")  # client and root
        helper.expect(PACKAGE_MENU)
        helper.sendline("2")  # ZIP
        helper.expect(r"Public host name or address of the server \[127\.0\.0\.1\]: ")
        helper.sendline("")
        helper.expect(r"Packages for \S+ at 127\.0\.0\.1:(\d+), admin port (\d+)")
        assert int(helper.match[1]) == chat_port
        helper.expect("built .*PartyPoolRoot")
        helper.expect(MENU)
        version = package_version()
        client_zip = tmp_path / "work" / "dist" / "client"
        client_zip /= f"PartyPoolClient-v{version}.zip"
        with zipfile.ZipFile(client_zip) as archive:
            sealed = archive.read(f"{client_zip.stem}/{INVITE_FILENAME}")
        packaged = tmp_path / "packaged-invite.json"
        packaged.write_bytes(sealed)
        assert open_invite(sealed, passkey).chat_port == chat_port

        # The package's invite reaches the server: a user joins with it.
        others = WireClient("127.0.0.1", chat_port, source="127.0.0.2")
        others.join(passkey, "bob")
        user = subprocess.run(
            [sys.executable, "-m", "partypool", "client", "--invite", str(packaged)]
            + ["--script", "--name", "zed"],
            input="hello from a package\n",
            env=dict(operator_env(tmp_path), PARTYPOOL_PASSKEY=passkey),
            cwd=tmp_path / "work",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert user.returncode == 0, user.stderr
        assert others.expect("CHAT zed") == "CHAT zed hello from a package"

        # 3. Login as Client, from the menu: this server's invite, the
        # passkey typed, a name, one line, /exit, back to the menu.
        helper.sendline("4")
        helper.expect("Enter passkey:")
        helper.sendline(passkey)
        helper.expect("username:")
        helper.sendline("alice")
        helper.expect(r"\$alice:")
        helper.sendline("hello from the menu")
        assert others.expect("CHAT alice") == "CHAT alice hello from the menu"
        helper.sendline("/exit")
        helper.expect(MENU)

        # 4. Login as Administrator: passkey (opens the invite), root
        # password, a command, exit, back to the menu, Exit.
        helper.sendline("3")
        helper.expect("Enter passkey:")
        helper.sendline(passkey)
        helper.expect("root password: ")
        helper.sendline(root_password)
        helper.expect(r"root@partypool>")
        helper.sendline("list-conn -u")
        helper.expect("bob")
        helper.expect(r"root@partypool>")
        helper.sendline("exit")
        helper.expect(MENU)
        helper.sendline("5")
        helper.expect(pexpect.EOF)
        helper.close()
        assert helper.exitstatus == 0

        # 5. A second server from the same folder starts (no pid file).
        second = subprocess.Popen(
            [sys.executable, "-m", "partypool", "serve", "--data-dir"]
            + [str(tmp_path / "second"), "--chat", "tcp:0:interface=127.0.0.1"]
            + ["--no-admin", "--no-web", "--kdf-iterations", "4096"],
            env=dict(operator_env(tmp_path), PARTYPOOL_PASSKEY=passkey),
            cwd=tmp_path / "work",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while datadir.read_server_record(tmp_path / "second") is None:
                assert second.poll() is None, second.communicate()[0]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            second.terminate()
            second.wait(TIMEOUT)
        assert not list((tmp_path / "work").glob("*.pid"))

        # 6. Ctrl-C stops the server and brings the menu back.
        server.sendintr()
        server.expect("Server Shut Down")
        server.expect(MENU)
        server.sendline("5")
        server.expect(pexpect.EOF)
    finally:
        if others is not None:
            others.close()
        for child in (server, helper):
            if child is not None:
                child.close(force=True)

    # 7. The next start asks nothing: the secrets were kept.
    again = partypool(tmp_path, "serve")
    try:
        index = again.expect(["Passkey \\(", "Chat address:"])
        assert index == 1, "asked for the passkey again"
        again.sendintr()
        again.expect(pexpect.EOF)
    finally:
        again.close(force=True)


def menu_child(menu: pexpect.spawn) -> int:
    """The pid of the program the menu runs now (from /proc)."""
    deadline = time.monotonic() + TIMEOUT
    children = Path(f"/proc/{menu.pid}/task/{menu.pid}/children")
    while not (pids := children.read_text().split()):
        assert time.monotonic() < deadline, "the menu started no child"
        time.sleep(0.05)
    [pid] = pids
    return int(pid)


def gone(pid: int) -> bool:
    """Whether the process has ended (a zombie waiting for its parent counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_menu_told_to_end_stops_its_server_first(tmp_path: Path, signum) -> None:
    """The terminal closes (SIGHUP) or the menu is terminated while it runs a
    server: the server, which takes SIGHUP as "reload", is stopped cleanly,
    then the menu ends by that signal, as a terminal program does."""
    prepare(tmp_path, "no-web = true\nkdf-iterations = 4096\n")
    menu = partypool(
        tmp_path, PARTYPOOL_PASSKEY=PASSKEY, PARTYPOOL_ROOT_PASSWORD=PASSKEY
    )
    server = None
    try:
        menu.expect(MENU)
        menu.sendline("1")
        menu.expect("Chat address:")
        server = menu_child(menu)
        os.kill(menu.pid, signum)
        menu.expect("Server Shut Down")
        menu.expect(pexpect.EOF)
        menu.close()
        assert menu.signalstatus == signum
        deadline = time.monotonic() + TIMEOUT
        while not gone(server):
            assert time.monotonic() < deadline, "the server runs on"
            time.sleep(0.05)
    finally:
        menu.close(force=True)
        if server is not None and not gone(server):
            os.kill(server, signal.SIGKILL)

"""Secrets given in the environment leave it once read (issue 12 item 15).

On Linux ``unsetenv`` alone leaves the value in ``/proc/<pid>/environ``
(the kernel shows the block the process started with), so these tests read
that file of real processes: a small Python one, and the real ``twistd``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from partypool import environ
from tests.conftest import (
    PASSKEY,
    server_env,
    spawn,
    twistd_command,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc/<pid>/environ is Linux's"
)
SECRET = "environ-SECRET-7d1e"
ROOT_SECRET = "root-environ-SECRET-c04b"


@linux_only
def test_unsetenv_alone_leaves_the_value_in_proc() -> None:
    """Why `take_secret` wipes the block: os.environ.pop is not enough."""
    script = (
        "import os; os.environ.pop('PARTYPOOL_PASSKEY');"
        "print('environ-SECRET' in open('/proc/self/environ').read())"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=server_env(PARTYPOOL_PASSKEY=SECRET),
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == "True"


@linux_only
def test_take_secret_leaves_nothing_in_proc_nor_in_children() -> None:
    script = (
        "import os, subprocess, sys\n"
        "from partypool.environ import take_secret\n"
        "value = take_secret('PARTYPOOL_PASSKEY')\n"
        "proc = open('/proc/self/environ', 'rb').read()\n"
        "child = subprocess.run([sys.executable, '-c',"
        " 'import os; print(os.environ.get(\"PARTYPOOL_PASSKEY\"))'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(value, b'environ-SECRET' in proc, b'PARTYPOOL_PASSKEY' in proc,"
        " b'OTHER=kept' in proc, child)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=server_env(PARTYPOOL_PASSKEY=SECRET, OTHER="kept"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == [SECRET, "False", "False", "True", "None"]


def test_take_secret_in_this_process(monkeypatch) -> None:
    monkeypatch.setenv("PARTYPOOL_TEST_SECRET", "x")
    assert environ.take_secret("PARTYPOOL_TEST_SECRET") == "x"
    assert environ.take_secret("PARTYPOOL_TEST_SECRET") is None
    monkeypatch.setenv("PARTYPOOL_TEST_SECRET", "")
    assert environ.take_secret("PARTYPOOL_TEST_SECRET") is None


def test_wipe_without_proc_does_nothing(monkeypatch) -> None:
    def missing(*args: object) -> tuple[int, int]:
        raise OSError("no /proc here")

    monkeypatch.setattr(environ, "_initial_block", missing)
    assert environ.wipe_initial_environment("PARTYPOOL_PASSKEY") == 0


@linux_only
def test_running_twistd_shows_neither_secret(tmp_path: Path) -> None:
    """The real server, started with both secrets in its environment, logs in
    a client with the passkey while /proc/<pid>/environ holds neither."""
    from tests.wire_client import WireClient

    data_dir = tmp_path / "data"
    command = twistd_command(
        data_dir,
        "--chat",
        "tcp:0:interface=127.0.0.1",
        "--admin",
        "tcp:0:interface=127.0.0.1",
    )
    env = server_env(PARTYPOOL_PASSKEY=PASSKEY, PARTYPOOL_ROOT_PASSWORD=ROOT_SECRET)
    server = spawn(command, data_dir, PASSKEY, env, tmp_path)
    try:
        server._read_startup(tls=True, admin=True)
        shown = Path(f"/proc/{server.process.pid}/environ").read_bytes()
        assert PASSKEY.encode() not in shown
        assert ROOT_SECRET.encode() not in shown
        assert b"PARTYPOOL_" not in shown
        assert b"PYTHONPATH=" in shown  # the rest is untouched
        client = WireClient(
            "127.0.0.1", server.chat_port, fingerprint=server.fingerprint
        )
        try:
            client.join(PASSKEY, "alice")
        finally:
            client.close()
    finally:
        assert server.stop() == 0, server.output()

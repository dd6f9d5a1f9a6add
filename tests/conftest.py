"""Shared fixtures: the real server, started as a ``twistd`` process on loopback.

The process runs the installed ``twistd -n partypool`` with this
source tree first on PYTHONPATH; the plugin itself comes from the installed
package, as it would for an operator.  Ports are ``tcp:0`` and read back from
the server's own "listening on" log lines, so parallel runs never collide.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import pytest
from twisted.logger import globalLogPublisher
from twisted.trial import unittest as trial

from tests.wire_client import WireClient

REPO = Path(__file__).resolve().parent.parent
PASSKEY = "correct horse battery staple"
STARTUP_TIMEOUT = 30.0
TWISTD = str(Path(sys.executable).with_name("twistd"))  # the installed script


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a child process that must import this source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTYPOOL_")}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@attrs.define
class RunningServer:
    process: subprocess.Popen
    data_dir: Path
    passkey: str
    host: str = "127.0.0.1"
    chat_port: int | None = None
    admin_port: int | None = None
    web_port: int | None = None
    irc_port: int | None = None
    fingerprint: str | None = None
    lines: list[str] = attrs.Factory(list)
    _queue: queue.Queue = attrs.Factory(queue.Queue)

    def _pump(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match:
        """Wait for a log line matching ``pattern`` (searched in earlier lines too)."""
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if match := regex.search(line):
                return match
        raise AssertionError(
            f"no log line matching {pattern!r}; log:\n" + "\n".join(self.lines)
        )

    def _read_startup(self, tls: bool, admin: bool, web: bool = False) -> None:
        self.chat_port = int(self.wait_for(r"chat port listening on \S+:(\d+)")[1])
        if web:
            self.web_port = int(self.wait_for(r"web door listening on \S+:(\d+)")[1])
        if tls:
            self.fingerprint = self.wait_for(r"SHA-256 fingerprint (\S+)")[1]
        if admin:
            self.admin_port = int(
                self.wait_for(r"admin port listening on \S+:(\d+)")[1]
            )

    def client(self, **options: object) -> WireClient:
        """A v1 client of the chat port, its certificate pinned (``options``:
        `WireClient`'s, such as the ``source`` address)."""
        return WireClient(
            self.host, self.chat_port, fingerprint=self.fingerprint, **options
        )

    def joined(self, name: str, **options: object) -> WireClient:
        """A `client` that has logged in with the passkey and joined as ``name``."""
        client = self.client(**options)
        client.join(self.passkey, name)
        return client

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, and return the exit status (killing it if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        """Everything logged so far (drains what has arrived)."""
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)


def twistd_command(data_dir: Path, *args: str) -> list[str]:
    """``twistd -n partypool`` for ``data_dir``, with cheap PBKDF2 for tests."""
    return [
        TWISTD,
        "-n",
        "--pidfile=",
        "partypool",
        "--data-dir",
        str(data_dir),
        "--kdf-iterations",
        "4096",
        *args,
    ]


def spawn(
    command: list[str], data_dir: Path, passkey: str, env: dict[str, str], cwd: Path
) -> RunningServer:
    """Start a server process and collect its output; the caller waits for it."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    server = RunningServer(process=process, data_dir=data_dir, passkey=passkey)
    threading.Thread(target=server._pump, daemon=True).start()
    return server


def start_server(
    data_dir: Path,
    *args: str,
    passkey: str = PASSKEY,
    admin: bool = False,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start ``twistd -n partypool`` and wait until its ports are listening."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    passkey_file = data_dir.parent / f"{data_dir.name}.passkey"
    passkey_file.write_text(passkey + "\n")
    passkey_file.chmod(0o600)
    command = twistd_command(
        data_dir,
        "--passkey-file",
        str(passkey_file),
        "--chat",
        "tcp:0:interface=127.0.0.1",
        "--admin",
        "tcp:0:interface=127.0.0.1",
        "--web",
        "tcp:0:interface=127.0.0.1",
        *args,
    )
    server = spawn(
        command, data_dir, passkey, server_env(**(env or {})), data_dir.parent
    )
    try:
        server._read_startup(
            tls="--no-tls" not in args, admin=admin, web="--no-web" not in args
        )
    except BaseException:
        server.process.kill()
        server.process.wait()
        raise
    return server


@pytest.fixture(autouse=True)
def _trial_mktemp_in_tmp_path(request, tmp_path: Path, monkeypatch) -> None:
    """trial's TestCase.mktemp() writes below the working directory: keep it
    out of the source tree."""
    if isinstance(request.instance, trial.SynchronousTestCase):  # TestCase too
        monkeypatch.chdir(tmp_path)


@pytest.fixture
def logged():
    """The log events emitted while the test runs (`formatEvent` reads them)."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.fixture
def chat_server(tmp_path: Path):
    """A running TLS server with default limits; stopped after the test."""
    server = start_server(tmp_path / "data")
    yield server
    if server.process.poll() is None:
        server.stop()

"""Real packages against a real server: frozen binaries and the ZIP's setup.sh.

These build with PyInstaller (a minute or so each) and pip-install into fresh
virtual environments, so they are ``slow``:
``pytest -m slow tests/test_dist_live.py -s`` prints the sizes and times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from dist_tools import build
from partypool.invite import INVITE_FILENAME, package_version
from tests.conftest import server_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
VERSION = package_version()
MESSAGE = "hello from a packaged client"


@pytest.fixture
def server(request: pytest.FixtureRequest):
    """The lead's live ``twistd -n partypool`` fixture (tests/conftest.py)."""
    try:
        return request.getfixturevalue("chat_server")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py has no chat_server fixture yet")


def clean_env(tmp_path: Path, passkey: str) -> dict[str, str]:
    """Only what a user's shell would have: no venv, no repo on the path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8",
        "PARTYPOOL_PASSKEY": passkey,
    }
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CACHE_DIR", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def dist(server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``partypool package`` for the live server, as an operator would:
    no host, no ports, no --no-tls.  The server listens on ports the system
    chose (never the default 12345) and recorded them, with its loopback
    address, in its data directory; the packages must reach it from that."""
    deadline = time.monotonic() + 30
    while not (server.data_dir / "server.json").exists():
        assert time.monotonic() < deadline, "the server recorded no address"
        time.sleep(0.1)
    argv = [sys.executable, "-m", "partypool", "package", *args]
    argv += ["--out", str(tmp_path / "out"), "--data-dir", str(server.data_dir)]
    env = dict(os.environ, PARTYPOOL_PASSKEY=server.passkey)
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


def listener(server):
    """A second user, written only from PROTOCOL.md, to receive the message."""
    from tests.wire_client import WireClient

    bob = WireClient(
        server.host,
        server.chat_port,
        tls=bool(server.fingerprint),
        fingerprint=server.fingerprint,
        source="127.0.0.2" if server.host == "127.0.0.1" else None,
    )
    bob.join(server.passkey, "bob")
    return bob


def chat_once(server, command: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run a packaged client in --script mode; bob must get its line. Its stdout."""
    bob = listener(server)
    try:
        run = subprocess.run(
            [*command, "--script", "--name", "alice", "--min-iterations", "4096"],
            input=MESSAGE + "\n",
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
        assert bob.expect("CHAT alice") == f"CHAT alice {MESSAGE}"
    finally:
        bob.close()
    return run.stdout


def report(what: str, path: Path, seconds: float) -> None:
    print(f"\n{what}: {path.name} {path.stat().st_size / 1e6:.1f} MB, {seconds:.0f} s")


def test_frozen_client(server, tmp_path: Path) -> None:
    """The one-file client logs in with only its embedded invite and the passkey."""
    started = time.monotonic()
    built = dist(server, tmp_path, "--client", "--format", "exe")
    seconds = time.monotonic() - started
    assert built.returncode == 0, built.stdout + built.stderr
    binary = build.executable_path(tmp_path / "out", build.CLIENT, VERSION)
    assert binary.is_file()
    report("client executable", binary, seconds)
    # Run from an empty directory: nothing but the binary and the environment.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = clean_env(tmp_path, server.passkey)
    version = subprocess.run(
        [str(binary), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"PartyPoolClient {VERSION}"
    out = chat_once(server, [str(binary)], env, workdir)
    assert "NAMED alice" in out
    wrong = subprocess.run(
        [str(binary), "--script", "--name", "mallory"],
        input="",
        env=dict(env, PARTYPOOL_PASSKEY="not the passkey"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode != 0
    assert "wrong passkey or damaged invite" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    smoke(tmp_path, "--client", binary)


def smoke(tmp_path: Path, *args: str | Path) -> None:
    """What the dist workflow runs on each system after building: the built
    program against a fresh ``partypool serve`` on this one."""
    run = subprocess.run(
        [sys.executable, "-m", "dist_tools.smoke", *map(str, args)],
        cwd=tmp_path,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr


ROOT_PASSWORD = "root password for the dist tests"


@pytest.fixture
def admin_server(tmp_path: Path):
    """A live server with its SSH admin port and a root password (conftest's)."""
    from tests.conftest import start_server

    password_file = tmp_path / "root-password"
    password_file.write_text(ROOT_PASSWORD + "\n")
    password_file.chmod(0o600)
    server = start_server(
        tmp_path / "data", "--root-password-file", str(password_file), admin=True
    )
    yield server
    if server.process.poll() is None:
        server.stop()


def root_list_conn(server, command: list[str], env: dict[str, str], cwd: Path):
    """Run ``<root client> -c list-conn`` while bob is online; its stdout."""
    bob = listener(server)
    try:
        run = subprocess.run(
            [*command, "-c", "list-conn"],
            stdin=subprocess.DEVNULL,
            env=dict(env, PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    finally:
        bob.close()
    assert "bob" in run.stdout
    return run.stdout


def test_frozen_root(admin_server, tmp_path: Path) -> None:
    """The one-file root client runs ``list-conn`` with only its embedded invite."""
    if not build.ROOT.available():
        pytest.skip("no root client yet: partypool.client.root does not exist")
    started = time.monotonic()
    built = dist(admin_server, tmp_path, "--root", "--format", "exe")
    seconds = time.monotonic() - started
    assert built.returncode == 0, built.stdout + built.stderr
    binary = build.executable_path(tmp_path / "out", build.ROOT, VERSION)
    report("root executable", binary, seconds)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = clean_env(tmp_path, admin_server.passkey)
    root_list_conn(admin_server, [str(binary)], env, workdir)
    smoke(tmp_path, "--root", binary)


def test_root_zip(admin_server, tmp_path: Path) -> None:
    """The root ZIP installs with setup.sh and runs one command through start.sh."""
    if not build.ROOT.available():
        pytest.skip("no root client yet: partypool.client.root does not exist")
    built = dist(admin_server, tmp_path, "--root", "--format", "zip")
    assert built.returncode == 0, built.stdout + built.stderr
    package = build.zip_path(tmp_path / "out", build.ROOT, VERSION)
    top = unpack(package, tmp_path / "unpacked")
    env = clean_env(tmp_path, admin_server.passkey)
    setup = subprocess.run(
        [str(top / "setup.sh"), "--setup-only"],
        env=env,
        cwd=top,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    root_list_conn(admin_server, [str(top / "start.sh")], env, top)


def unpack(package: Path, into: Path) -> Path:
    """Unzip as a user would (keeping execute bits); the package's top directory."""
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(package), "-d", str(into)], check=True)
    else:
        with zipfile.ZipFile(package) as archive:
            archive.extractall(into)
            for info in archive.infolist():
                (into / info.filename).chmod(info.external_attr >> 16 & 0o777)
    top = into / package.stem
    assert (top / INVITE_FILENAME).is_file()
    return top


def test_client_zip(server, tmp_path: Path) -> None:
    """Unpacked ZIP: setup.sh makes a venv from the local source and chats once."""
    started = time.monotonic()
    built = dist(server, tmp_path, "--client", "--format", "zip")
    assert built.returncode == 0, built.stdout + built.stderr
    package = build.zip_path(tmp_path / "out", build.CLIENT, VERSION)
    report("client ZIP", package, time.monotonic() - started)
    top = unpack(package, tmp_path / "unpacked")
    env = clean_env(tmp_path, server.passkey)
    setup_started = time.monotonic()
    out = chat_once(server, [str(top / "setup.sh")], env, top)
    setup_seconds = time.monotonic() - setup_started
    print(f"setup.sh (fresh venv, pip install, chat): {setup_seconds:.0f} s")
    assert "NAMED alice" in out
    # Installed from the ZIP's own source, not from PyPI or this checkout.
    installed = subprocess.run(
        [
            str(top / ".venv" / "bin" / "python"),
            "-c",
            "import partypool.invite as m; print(m.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert str(top / ".venv") in installed.stdout
    # start.sh reuses the installed venv.
    again = chat_once(server, [str(top / "start.sh")], env, top)
    assert "NAMED alice" in again

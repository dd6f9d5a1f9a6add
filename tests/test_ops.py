"""Operations without a running server: sd_notify, readiness, the config file,
log formats, certificate reload, and the systemd unit files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure

from partypool import logs, sighup, tap
from partypool.config import config_path
from partypool.sd_notify import Readiness, notify, watchdog_interval
from partypool.service import CertificateReload, Listener, StoreService
from partypool.tls import ConfigError, ServerTLS, ensure_self_signed
from tests.conftest import TWISTD, server_env

UNITS = Path(__file__).resolve().parent.parent / "dist_tools" / "systemd"


# --- sd_notify -------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock, {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    sock.close()


def test_notify_sends_one_datagram(notify_socket):
    """A state is one datagram on the path systemd gave."""
    sock, environ = notify_socket
    assert notify("READY=1", environ)
    assert sock.recv(100) == b"READY=1"


def test_notify_abstract_socket(tmp_path):
    """``@name`` is a Linux abstract socket (systemd uses them in containers)."""
    name = f"partypool-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"STOPPING=1"


def test_notify_outside_systemd_or_without_listener(tmp_path):
    """No NOTIFY_SOCKET: nothing sent; a vanished socket is not an error."""
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_interval_is_half_the_timeout_and_ours_only():
    """WATCHDOG_USEC/2, unless WATCHDOG_PID names another process."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


class RunningReactor:
    """A reactor that is already running, as when twistd starts the services."""

    def callWhenRunning(self, f, *args):  # noqa: N802
        f(*args)


def test_ready_only_after_every_listener_then_stopping(notify_socket):
    """READY=1 waits for both ports; WATCHDOG=1 on the clock; STOPPING=1 on stop."""
    sock, environ = notify_socket
    sock.settimeout(0.2)
    chat, admin, clock = Deferred(), Deferred(), task.Clock()
    environ = {**environ, "WATCHDOG_USEC": "2000000"}
    readiness = Readiness([chat, admin], RunningReactor(), clock, environ)
    readiness.startService()
    assert sock.recv(100) == b"WATCHDOG=1"
    chat.callback(None)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    admin.callback(None)
    assert sock.recv(100).startswith(b"READY=1\n")
    clock.advance(1.0)
    assert sock.recv(100) == b"WATCHDOG=1"
    readiness.stopService()
    assert sock.recv(100).startswith(b"STOPPING=1\n")
    assert clock.getDelayedCalls() == []


# --- certificate reload ----------------------------------------------------


def install(source: tuple[Path, Path], cert: Path, key: Path) -> None:
    """Put a certificate and key in place the way a renewal tool would."""
    for src, dst in zip(source, (cert, key), strict=True):
        shutil.copyfile(src, dst.with_suffix(".new"))
        dst.with_suffix(".new").chmod(0o600)
        dst.with_suffix(".new").replace(dst)


def test_reload_takes_new_certificate_and_keeps_old_on_error(tmp_path):
    """reload() returns the new fingerprint; broken files keep the old one."""
    first = ensure_self_signed(tmp_path / "first")
    second = ensure_self_signed(tmp_path / "second")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(first, cert, key)
    tls = ServerTLS(cert, key)
    old = tls.fingerprint
    reloader = CertificateReload(tls, RunningReactor())

    install(second, cert, key)
    new = reloader.reload()
    assert new != old and tls.fingerprint == new

    cert.write_text("not a certificate")
    errors = []
    globalLogPublisher.addObserver(errors.append)
    try:
        with pytest.raises(ConfigError, match="cannot use TLS certificate"):
            reloader.reload()
    finally:
        globalLogPublisher.removeObserver(errors.append)
    assert tls.fingerprint == new
    assert any(e.get("log_level") == LogLevel.error for e in errors)


@pytest.mark.parametrize(
    ("argv", "orig_argv", "serves"),
    [
        (["/v/bin/twistd", "-n", "partypool"], ["/v/bin/python", "/v/bin/twistd"], 1),
        (["/v/bin/twistd", "--pidfile=", "partypool", "--no-tls"], [], 1),
        (["/v/bin/twist", "partypool"], [], 1),
        (["-m", "-n", "partypool"], ["python", "-m", "twisted", "-n", "partypool"], 1),
        (["/v/bin/partypool", "serve", "--no-tls"], [], 1),
        (["-m", "serve"], ["python", "-X", "dev", "-m", "partypool", "serve"], 1),
        (["/v/bin/twistd", "--help"], [], 0),
        (["/v/bin/twistd", "-n", "web", "--path", "/srv/partypool"], [], 0),
        (["/v/bin/partypool"], [], 0),  # the menu: its child serves
        (["/v/bin/partypool", "client"], [], 0),
        (["/v/bin/partypool-client", "serve"], [], 0),
        (["-m", "client"], ["python", "-m", "partypool", "client"], 0),
        (["-m", "serve"], ["python", "-m", "partypool.bench", "serve"], 0),
        (["-c", "partypool", "serve"], ["python", "-c", "x", "partypool", "serve"], 0),
        ([], [], 0),
    ],
)
def test_which_command_lines_serve(argv, orig_argv, serves):
    """Only the server's own command lines catch SIGHUP early; a client must
    still end when its terminal hangs up."""
    assert sighup.serving(argv, orig_argv) is bool(serves)


HANGUP_PROBE = """\
import os, signal, sys
handler = signal.getsignal(signal.SIGHUP)
twisted = sorted(m for m in sys.modules if m.split(".")[0] == "twisted")
if handler is not signal.SIG_DFL:
    os.kill(os.getpid(), signal.SIGHUP)
print(handler.__name__ if callable(handler) else handler.name, twisted)
"""


def run_named(tmp_path: Path, name: str, *args: str, python_args=(), env=None):
    """Run HANGUP_PROBE as a program called *name* (its sys.argv[0])."""
    program = tmp_path / name
    program.write_text(HANGUP_PROBE)
    return subprocess.run(
        [sys.executable, *python_args, str(program), *args],
        env=env or server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def editable_install() -> bool:
    """Whether partypool is installed in editable mode (PEP 660, PEP 610)."""
    direct_url = metadata.distribution("partypool").read_text("direct_url.json")
    return bool(
        direct_url and json.loads(direct_url).get("dir_info", {}).get("editable")
    )


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP")
def test_installed_hook_catches_sighup_before_twistd_imports_twisted(tmp_path):
    """partypool-sighup.pth (installed by setup.py) runs while Python starts:
    a server's first line of code already finds SIGHUP caught, with no part
    of Twisted loaded yet, and a SIGHUP then does not end it."""
    if editable_install():
        pytest.skip("an editable install has no partypool-sighup.pth")
    hook = Path(sysconfig.get_paths()["purelib"]) / "partypool-sighup.pth"
    assert hook.is_file(), "setup.py did not install its start-up hook"
    for name, args in [("twistd", ["-n", "partypool"]), ("partypool", ["serve"])]:
        run = run_named(tmp_path, name, *args)
        assert (run.returncode, run.stdout) == (0, "_remember []\n"), run.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP")
@pytest.mark.parametrize(
    ("name", "args"),
    [("partypool", ["client"]), ("twistd", ["-n", "web"]), ("python3", ["x"])],
)
def test_installed_hook_leaves_other_programs_alone(tmp_path, name, args):
    """Clients and other twistd programs keep SIGHUP's default action."""
    run = run_named(tmp_path, name, *args)
    assert (run.returncode, run.stdout) == (0, "SIG_DFL []\n"), run.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP")
def test_importing_tap_makes_sighup_harmless_before_its_slow_imports(tmp_path):
    """Without the hook (``python -S``, an editable install) twistd's import of
    tap, while it parses options and long before the services start, is the
    first moment: a SIGHUP while tap's own imports load (conch) is caught."""
    probe = tmp_path / "twistd"
    probe.write_text(
        "import importlib.abc, os, signal, sys\n"
        "assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # no hook\n"
        "class Hangup(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'twisted.conch':\n"
        "            os.kill(os.getpid(), signal.SIGHUP)\n"
        "sys.meta_path.insert(0, Hangup())\n"
        "import partypool.tap\n"
        "import partypool.sighup as s\n"
        "print('alive', s.take_pending(), s.take_pending())"
    )
    env = server_env()
    env["PYTHONPATH"] += os.pathsep + sysconfig.get_paths()["purelib"]
    run = subprocess.run(
        [sys.executable, "-S", str(probe), "-n", "partypool"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout) == (0, "alive True False\n"), run.stderr


def test_a_sighup_while_starting_reloads_once_running(monkeypatch):
    """A SIGHUP remembered while starting is acted on when the reactor runs."""
    queued = []
    reactor = RunningReactor()
    reactor.callFromThread = lambda f, *args: queued.append(f)
    reloader = CertificateReload(None, reactor)
    monkeypatch.setattr(reloader, "reload", lambda: queued.append("reload") or "")
    previous = signal.signal(signal.SIGHUP, sighup._remember)
    try:
        os.kill(os.getpid(), signal.SIGHUP)  # the default action would end pytest
        reloader.privilegedStartService()
        assert signal.getsignal(signal.SIGHUP) == reloader._hangup
        assert not sighup._pending
        assert len(queued) == 1
        queued.pop()()
        assert queued == ["reload"]
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_reload_without_tls_says_so():
    with pytest.raises(ConfigError, match="TLS is off"):
        CertificateReload(None, RunningReactor()).reload()


def test_service_tree_has_reload_and_readiness(tmp_path, monkeypatch):
    """Readiness waits on every Listener and stops before the farewell."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    options = parse(tmp_path, "--no-admin", "--kdf-iterations", "4096")
    children = list(tap.makeService(options))
    [reload] = [c for c in children if isinstance(c, CertificateReload)]
    assert reload.tls is options["tls"]
    listeners = [c for c in children if isinstance(c, Listener)]
    readiness = children[-2]
    assert isinstance(readiness, Readiness)
    assert readiness.listening == [c.listening for c in listeners]
    assert [c.label for c in listeners] == ["chat port", "web door"]
    [store] = [c for c in children if isinstance(c, StoreService)]
    store.store.close()


# --- configuration file ----------------------------------------------------

# One value per option that a config file may set: a new option must be added
# here, so "every option round-trips" stays true.
SAMPLES = {
    "chat": ("tcp:2000:interface=127.0.0.1", "tcp:2000:interface=127.0.0.1"),
    "admin": ("tcp:2001", "tcp:2001"),
    "web": ("tcp:2002", "tcp:2002"),
    "web-origin": (
        "https://a.example, https://B.example:8443/",
        frozenset({"https://a.example", "https://b.example:8443"}),
    ),
    "irc": ("tcp:6697", "tcp:6697"),
    "irc-channel": ("#lobby", "#lobby"),
    "tls-cert": ("c.pem", "c.pem"),
    "tls-key": ("k.pem", "k.pem"),
    "server-name": ("pool.example", "pool.example"),
    "max-clients": (7, 7),
    "max-line": (512, 512),
    "max-text": (300, 300),
    "max-request": (400, 400),
    "max-requests-per-day": (7, 7),
    "login-timeout": (2.5, 2.5),
    "idle-ping": (9, 9.0),
    "rate": (1.5, 1.5),
    "burst": (4, 4),
    "flood-drops": (20, 20),
    "flood-window": (5, 5.0),
    "max-pending": (4096, 4096),
    "max-pending-logins": (3, 3),
    "max-unauthenticated": (40, 40),
    "login-budget": (7, 7),
    "login-failures": (3, 3),
    "login-window": (30, 30.0),
    "login-penalty": (120, 120.0),
    "write-rate": (5000, 5000.0),
    "max-hold": (0.25, 0.25),
    "history": (0, 0),
    "history-days": (1.5, 1.5),
    "kdf-iterations": (5000, 5000),
    "log-format": ("json", "json"),
}
NOT_IN_FILE = {"config", "passkey", "root-password"}


def toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value).lower()


def write_config(tmp_path: Path, lines: dict[str, object] | str) -> Path:
    path = tmp_path / "partypool.toml"
    if isinstance(lines, dict):
        lines = "".join(f"{k} = {toml_value(v)}\n" for k, v in lines.items())
    path.write_text(lines)
    return path


def parse(tmp_path: Path, *args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(["--data-dir", str(tmp_path / "data"), *args])
    return options


def test_every_option_round_trips_through_the_config_file(tmp_path, monkeypatch):
    """Each long option is a key of the same name, with the same converter."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    flags = [f[0] for f in tap.Options.optFlags]
    parameters = [p[0] for p in tap.Options.optParameters]
    secret = tmp_path / "secret"
    secret.write_text("from a file\n")
    secret.chmod(0o600)
    samples = {
        **SAMPLES,
        "data-dir": (str(tmp_path / "other"), tmp_path / "other"),
        "passkey-file": (str(secret), str(secret)),
        "root-password-file": (str(secret), str(secret)),
    }
    assert set(parameters) - NOT_IN_FILE == set(samples), "add the new option"
    config = {flag: True for flag in flags}
    config |= {key: value for key, (value, _) in samples.items()}
    options = tap.Options()
    options.parseOptions(["--config", str(write_config(tmp_path, config))])
    for flag in flags:
        assert options[flag], flag
    for key, (_, expected) in samples.items():
        assert options[key] == expected, key
    assert options["passkey"] == options["root-password"] == "from a file"


def test_command_line_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    path = write_config(tmp_path, {"max-clients": 7, "rate": 1.5, "no-admin": True})
    options = parse(tmp_path, "--max-clients", "9", f"--config={path}")
    assert options["max-clients"] == 9
    assert options["rate"] == 1.5 and options["no-admin"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("max-clients = 0", "partypool.toml: max-clients: must be greater than zero"),
        ('max-clients = "many"', "max-clients: must be a whole number, not many"),
        ("login-timeout = 'soon'", "login-timeout: must be a number, not soon"),
        ("no-tls = 1", "no-tls = 1: must be true or false"),
        ("chat = [12345]", "chat: must be a string or a number"),
        ("log-format = 'xml'", "log-format: must be one of text, journal, json"),
        ("max-client = 3", "unknown key 'max-client' (did you mean max-clients?)"),
        ("[server]\nmax-clients = 3", "unknown key 'server'"),
        ('passkey = "hunter2"', "set passkey-file"),
        ("max-clients 3", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, monkeypatch, text, message):
    """A mistake names the file and the key, on one line."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    path = write_config(tmp_path, text)
    with pytest.raises(usage.UsageError) as error:
        parse(tmp_path, "--config", str(path))
    assert message in str(error.value)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_shipped_sample_config_is_valid(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    options = parse(tmp_path, "--no-admin", "--config", str(UNITS / "partypool.toml"))
    assert options["max-clients"] == 25


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(usage.UsageError, match="--config .*nope.toml: No such file"):
        parse(tmp_path, "--config", str(tmp_path / "nope.toml"))


def test_config_path_is_found_before_parsing():
    assert config_path(["--config", "a", "--config=b"]) == "b"
    assert config_path(["--", "--config", "a"]) is None


def test_twistd_prints_the_config_error(tmp_path):
    """The real command line: twistd's usage text, then the one line."""
    path = write_config(tmp_path, "max-clients = 0\n")
    run = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "partypool", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
    )
    assert run.returncode == 1
    last = run.stdout.strip().splitlines()[-1]
    assert last.endswith(f"{path}: max-clients: must be greater than zero, not 0")


# --- log formats -----------------------------------------------------------


def event(level: LogLevel, **fields: object) -> dict:
    return {
        "log_level": level,
        "log_namespace": "partypool.doors.chat",
        "log_time": 0.0,
        "log_format": "connect from {address}",
        **fields,
    }


def test_journal_lines_carry_priority_not_time():
    """journald adds the time; ``<N>`` gives each line its priority."""
    line = logs.journal_line(event(LogLevel.warn, address="127.0.5.1:5"))
    assert line == "<4>[partypool.doors.chat#warn] connect from 127.0.5.1:5\n"
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        failure = Failure()
    lines = logs.journal_line(event(LogLevel.error, address="x", log_failure=failure))
    assert len(lines.splitlines()) > 2
    assert all(line.startswith("<3>") for line in lines.splitlines())


def test_json_lines_for_log_shippers():
    """One object per line: time, level, namespace, message and the fields."""
    line = logs.json_line(event(LogLevel.info, address="127.0.5.1:5", port=3))
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["time"] == "1970-01-01T00:00:00.000+00:00"
    assert record["level"] == "info" and record["namespace"] == "partypool.doors.chat"
    assert record["message"] == "connect from 127.0.5.1:5"
    assert record["address"] == "127.0.5.1:5" and record["port"] == 3


def test_log_format_chooses_twistds_logger(tmp_path, monkeypatch):
    """--log-format sets twistd's own --logger, text included (to clean its lines);
    an operator's --logger wins over text, and journal and json refuse --logfile."""
    from twisted.scripts.twistd import ServerOptions

    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    common = ["partypool", "--data-dir", str(tmp_path / "d"), "--no-admin"]
    options = ServerOptions()
    options.parseOptions(["-n", *common, "--log-format", "journal"])
    assert options["logger"] is logs.journal_observer
    options = ServerOptions()
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")  # the first parse took it
    options.parseOptions(["-n", *common])
    assert options["logger"] is logs.text_observer
    options = ServerOptions()
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    options.parseOptions(
        ["-n", "--logger", "twisted.logger.jsonFileLogObserver", *common]
    )
    assert options["logger"] is not logs.text_observer  # the operator's own wins
    with pytest.raises(usage.UsageError, match="drop twistd's --logger, --logfile"):
        ServerOptions().parseOptions(
            ["--logfile", "x.log", *common, "--log-format", "json"]
        )
    with pytest.raises(usage.UsageError, match="run twistd -n"):
        ServerOptions().parseOptions([*common, "--log-format", "json"])


# --- unit files ------------------------------------------------------------


@pytest.fixture
def units(tmp_path):
    """The unit files with ExecStart pointing at this venv's twistd.

    ``systemd-analyze verify`` checks that the command exists; the shipped
    file names /opt/partypool/bin/twistd, the README's install path.
    """
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (CI installs systemd)")
    for unit in UNITS.glob("*.s*"):
        text = unit.read_text().replace("/opt/partypool/bin/twistd", TWISTD)
        (tmp_path / unit.name).write_text(text)
    return sorted(tmp_path.glob("partypool*.s*"))


def test_unit_raises_the_descriptor_limit():
    """One descriptor per connection: systemd's default soft limit (1024)
    would cap a big room long before --max-clients."""
    unit = (UNITS / "partypool.service").read_text()
    limit = re.search(r"^LimitNOFILE=(\d+)$", unit, re.MULTILINE)
    assert limit is not None and int(limit[1]) >= 65536


def test_unit_files_verify(units):
    """systemd itself finds nothing wrong with the service and its sockets."""
    assert [u.name for u in units] == [
        "partypool-admin.socket",
        "partypool-irc.socket",
        "partypool-web.socket",
        "partypool.service",
        "partypool.socket",
    ]
    run = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "partypool" not in run.stderr, run.stderr


def test_service_is_rated_ok_by_systemd_analyze_security(units):
    """The hardening keeps the exposure level at 2.0 or below ("OK")."""
    service = next(u for u in units if u.suffix == ".service")
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(service)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "offline" in run.stderr and run.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot rate files: {run.stderr.strip()}")
    level = float(run.stdout.split("Overall exposure level for")[1].split()[1])
    assert level <= 2.0, run.stdout

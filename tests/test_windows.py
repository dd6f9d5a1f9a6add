"""Windows- and macOS-only code paths, run here by pretending (issue 17,
"Windows and macOS"): the console that stays open on an error, the setup
scripts, the executable's README, a server without SIGHUP.  The data
directory's Windows rules are in test_datadir.py, ``partypool serve``'s
runner arguments in test_launcher.py."""

from __future__ import annotations

import builtins
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dist_tools import build, console
from partypool.service import CertificateReload


class Tty:
    def isatty(self) -> bool:
        return True


@pytest.fixture
def windows_console(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(sys, "stdin", Tty())


def test_double_clicked_exe_owns_its_window(windows_console) -> None:
    """PyInstaller's bootloader and its Python process alone on the console:
    double-clicked.  A shell makes three."""
    assert console.window_closes_on_exit(lambda: 2)
    assert not console.window_closes_on_exit(lambda: 3)
    assert not console.window_closes_on_exit(lambda: 0)


def test_not_windows_never_pauses(monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(sys, "stdin", Tty())
    assert not console.window_closes_on_exit(lambda: 1)


def test_no_console_api_never_pauses(windows_console) -> None:
    def broken() -> int:
        raise OSError("no console")

    assert not console.window_closes_on_exit(broken)


@pytest.fixture
def pauses(monkeypatch) -> list[str]:
    prompts: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": prompts.append(prompt))
    return prompts


def test_failure_waits_for_enter(pauses) -> None:
    """A wrong passkey (status 1) or a kick (2): the message stays readable."""
    assert console.run_keeping_console(lambda: 1, closes=lambda: True) == 1
    assert console.run_keeping_console(lambda: 2, closes=lambda: True) == 2
    assert pauses == ["\nPress Enter to close this window."] * 2


def test_success_and_ctrl_c_close_at_once(pauses) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert console.run_keeping_console(lambda: 0, closes=lambda: True) == 0
    assert console.run_keeping_console(interrupted, closes=lambda: True) == 130
    assert console.run_keeping_console(lambda: 1, closes=lambda: False) == 1
    assert pauses == []


def test_crash_and_usage_error_wait_too(pauses, capsys) -> None:
    def crash() -> int:
        raise RuntimeError("boom")

    def usage() -> int:
        raise SystemExit(2)

    assert console.run_keeping_console(crash, closes=lambda: True) == 1
    assert "RuntimeError: boom" in capsys.readouterr().err
    assert console.run_keeping_console(usage, closes=lambda: True) == 2
    assert len(pauses) == 2


def test_frozen_entries_keep_the_console() -> None:
    for entry in (build.CLIENT.entry, build.ROOT.entry):
        assert "run_keeping_console(main)" in entry.read_text()


@pytest.fixture
def unpacked(tmp_path: Path) -> Path:
    path = build.build_zip(
        build.CLIENT, b'{"partypool-invite": 1}', tmp_path, progress=lambda _: None
    )
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "unpacked")
        for info in archive.infolist():
            (tmp_path / "unpacked" / info.filename).chmod(info.external_attr >> 16)
    return tmp_path / "unpacked" / path.stem


def test_setup_bat_checks_python_and_pauses_when_double_clicked(
    unpacked: Path,
) -> None:
    bat = (unpacked / "setup.bat").read_bytes().decode()
    assert "\r\n" in bat and "\n" not in bat.replace("\r\n", "")
    check = bat.index("sys.version_info < (3, 11)")
    assert check < bat.index("-m venv .venv")  # before downloading anything
    assert 'find /i "%~nx0"' in bat and 'set "DOUBLE_CLICKED=1"' in bat
    assert bat.count("if defined DOUBLE_CLICKED pause") == 2  # failure, exit
    start = (unpacked / "start.bat").read_bytes().decode()
    assert "if defined DOUBLE_CLICKED pause" in start


def test_setup_sh_refuses_an_old_python_before_installing(
    unpacked: Path, tmp_path: Path
) -> None:
    """macOS ships Python 3.9: say so at once, download nothing."""
    old = tmp_path / "python3.9"
    old.write_text(
        '#!/bin/sh\ncase "$1" in -V) echo "Python 3.9.6";; *) exit 1;; esac\n'
    )
    old.chmod(0o755)
    run = subprocess.run(
        ["sh", str(unpacked / "setup.sh"), "--setup-only"],
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(old)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "needs Python 3.11 or newer" in run.stderr
    assert "Python 3.9.6" in run.stderr
    assert not (unpacked / ".venv").exists()


def test_executable_readme_says_how_to_open_it(tmp_path: Path) -> None:
    """Unsigned: macOS's quarantine and Windows' SmartScreen, step by step."""
    target = tmp_path / "PartyPoolClient-v9.9.exe"
    readme = build._write_executable_readme(build.CLIENT, "9.9", target)
    assert readme == tmp_path / "PartyPoolClient-v9.9.README.txt"
    text = readme.read_text()
    assert "xattr -d com.apple.quarantine PartyPoolClient-v9.9" in text
    assert "Open Anyway" in text and "Run anyway" in text
    assert "press Enter" in text


def test_server_starts_without_sighup(monkeypatch) -> None:
    """Windows has no SIGHUP: the certificate reload service must not stop
    the start (reload-tls on the admin port still works)."""
    monkeypatch.delattr(signal, "SIGHUP")
    service = CertificateReload(None, reactor=None)
    service.startService()
    assert service.running

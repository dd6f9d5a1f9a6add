"""Packaging rules needing no server: names, contents, no overwrite, no partial file."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import attrs
import pytest

from dist_tools import __main__ as cli
from dist_tools import build
from partypool.invite import (
    INVITE_FILENAME,
    Invite,
    open_invite,
    package_version,
    seal_invite,
)

REPO = Path(__file__).resolve().parent.parent
VERSION = package_version()


@pytest.fixture
def sealed() -> bytes:
    invite = Invite("h.example", 12345, 12346, False, None, None, "H")
    return seal_invite(invite, "pk", iterations=1_000)


@pytest.fixture
def client() -> build.Package:
    """The client package; skipped until the client module exists."""
    if not build.CLIENT.available():
        pytest.skip("partypool.client.main is not written yet")
    return build.CLIENT


def quiet(_: str) -> None:
    pass


def test_zip_contents(tmp_path: Path, sealed: bytes, client: build.Package) -> None:
    """The ZIP holds the source, the invite, requirements, setup scripts, README."""
    path = build.build_zip(client, sealed, tmp_path, progress=quiet)
    assert path == tmp_path / "client" / f"PartyPoolClient-v{VERSION}.zip"
    top = f"PartyPoolClient-v{VERSION}/"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {
            top + n
            for n in [
                INVITE_FILENAME,
                "requirements.txt",
                "setup.sh",
                "setup.bat",
                "start.sh",
                "README.txt",
                "setup.cfg",
                "pyproject.toml",
                "partypool/invite.py",
                "partypool/client/main.py",
            ]
        } <= names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert open_invite(archive.read(top + INVITE_FILENAME), "pk").host == (
            "h.example"
        )
        requirements = archive.read(top + "requirements.txt").decode()
        assert "twisted" in requirements.lower()
        assert "prompt_toolkit" in requirements
        setup_mode = archive.getinfo(top + "setup.sh").external_attr >> 16
        assert setup_mode & 0o111, "setup.sh must be executable after unzip"
        assert b"\r\n" in archive.read(top + "setup.bat")
        setup_cfg = archive.read(top + "setup.cfg").decode()
        assert f"version = {VERSION}" in setup_cfg
        assert "partypool-client = partypool.client.main:main" in setup_cfg
        assert "twisted.plugins" not in setup_cfg
        # Only what the clients run: no server, admin side or benchmark.
        sources = {n.removeprefix(top) for n in names if n.endswith(".py")}
        for server_side in [
            "partypool/tap.py",
            "partypool/service.py",
            "partypool/room/session.py",
            "partypool/room/store.py",
            "partypool/doors/chat.py",
            "partypool/admin/commands.py",
            "partypool/bench/run.py",
        ]:
            assert server_side not in sources
        assert "partypool/client/root.py" in sources
        assert "schema" not in setup_cfg


def test_refuses_to_overwrite(
    tmp_path: Path, sealed: bytes, client: build.Package
) -> None:
    """A package of the same version is never replaced without force."""
    path = build.build_zip(client, sealed, tmp_path, progress=quiet)
    path.write_bytes(b"handed out already")
    with pytest.raises(build.BuildError, match="already exists.*--force"):
        build.build_zip(client, sealed, tmp_path, progress=quiet)
    assert path.read_bytes() == b"handed out already"
    build.build_zip(client, sealed, tmp_path, force=True, progress=quiet)
    assert zipfile.is_zipfile(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp files"


def test_cli_refuses_to_overwrite(tmp_path: Path, client: build.Package) -> None:
    """The command line says why and exits 1; --force replaces."""
    existing = tmp_path / "out" / "client" / f"PartyPoolClient-v{VERSION}.zip"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"old")
    argv = ["--client", "--format", "zip", "--host", "h.example", "--no-tls"]
    argv += ["--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    env = {"PARTYPOOL_PASSKEY": "pk", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "dist_tools", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "already exists" in run.stderr
    assert existing.read_bytes() == b"old"
    run = subprocess.run(
        [sys.executable, "-m", "dist_tools", *argv, "--force"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(existing) as archive:
        sealed = archive.read(f"PartyPoolClient-v{VERSION}/{INVITE_FILENAME}")
    # The packaged invite uses the full default cost.
    assert b'"iterations": 390000' in sealed
    assert open_invite(sealed, "pk").tls is False


def test_failed_build_leaves_no_package(tmp_path: Path, sealed: bytes) -> None:
    """PyInstaller failing leaves no executable, keeps its log, says where."""
    broken_entry = tmp_path / "broken.py"
    broken_entry.write_text("import sys\n")
    package = attrs.evolve(
        build.CLIENT, module="partypool.invite", entry=tmp_path / "missing.py"
    )
    out = tmp_path / "out"
    with pytest.raises(build.BuildError, match="PyInstaller failed") as failure:
        build.build_executable(package, sealed, out, progress=quiet)
    target = build.executable_path(out, package, VERSION)
    assert not target.exists()
    log = target.with_name(target.name + ".build.log")
    assert log.is_file()
    assert str(log) in str(failure.value)
    assert sorted(p.name for p in target.parent.iterdir()) == [log.name]


def test_unavailable_package_is_refused(tmp_path: Path, sealed: bytes) -> None:
    """Asking for a program this checkout lacks is a clear error, not a crash."""
    package = attrs.evolve(build.ROOT, module="partypool.client.no_such_module")
    with pytest.raises(build.BuildError, match="not in this checkout"):
        build.build_zip(package, sealed, tmp_path, progress=quiet)
    assert not (tmp_path / "root").exists()


def test_menu_choices() -> None:
    """The seed's two menus: which packages, then which formats; 4 cancels."""
    answers = iter(["9", "3", "2"])
    output = io.StringIO()
    choices = cli.ask_choices(
        ask=lambda _: next(answers), say=lambda s: print(s, file=output)
    )
    assert choices == cli.Choices(packages=(build.CLIENT, build.ROOT), formats=("zip",))
    assert "Please type a number from 1 to 4" in output.getvalue()
    answers = iter(["1", "4"])
    assert cli.ask_choices(ask=lambda _: next(answers), say=quiet) is None


def test_no_terminal_no_flags(tmp_path: Path) -> None:
    """No --client/--root and no terminal: it explains instead of hanging."""
    run = subprocess.run(
        [sys.executable, "-m", "dist_tools", "--host", "h"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "--client and/or --root" in run.stderr


def test_platform_label_names_glibc() -> None:
    """The Linux build says which glibc it needs (the one it was built with)."""
    label = build.platform_label()
    if sys.platform.startswith("linux"):
        assert "glibc" in label


def test_invite_file(tmp_path: Path, sealed: bytes, client: build.Package) -> None:
    """--invite-file embeds a ready invite: no data dir, no passkey (how CI works)."""
    invite = tmp_path / "invite.json"
    invite.write_bytes(sealed)
    assert (
        cli.main(
            ["--client", "--format", "zip", "--invite-file", str(invite)]
            + ["--out", str(tmp_path / "out")]
        )
        == 0
    )
    path = build.zip_path(tmp_path / "out", client, VERSION)
    with zipfile.ZipFile(path) as archive:
        assert archive.read(f"{path.stem}/{INVITE_FILENAME}") == sealed
    not_an_invite = tmp_path / "other.json"
    not_an_invite.write_text("{}")
    assert (
        cli.main(
            ["--client", "--format", "zip", "--invite-file", str(not_an_invite)]
            + ["--out", str(tmp_path / "out2")]
        )
        == 1
    )
    assert not (tmp_path / "out2").exists()


def test_progress_phases() -> None:
    """PyInstaller's output is logged whole; each phase is announced once."""
    output = io.StringIO(
        "12 INFO: Analyzing a.py\n13 INFO: Analyzing b.py\n"
        "20 INFO: Building PYZ (ZlibArchive)\n30 INFO: Building EXE from x\n"
        "31 INFO: Build complete!\n"
    )
    log = io.StringIO()
    phases: list[str] = []
    build._follow(output, log, phases.append)
    assert phases == [
        "analysing imports",
        "compressing Python modules",
        "writing the executable",
        "done",
    ]
    assert log.getvalue() == output.getvalue()


def test_interactive_menu(tmp_path: Path, client: build.Package) -> None:
    """In a terminal, the seed's menus lead to a package with no flags given."""
    pexpect = pytest.importorskip("pexpect")
    from tests.test_invite import make_data_dir

    make_data_dir(tmp_path / "data")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "dist_tools", "--out", str(tmp_path / "out")],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        timeout=60,
    )
    child.expect(r"Enter your choice \(1-4\)")
    child.sendline("1")  # client only
    child.expect(r"ZIP.*Enter your choice \(1-4\)")
    child.sendline("2")  # ZIP
    child.expect("data directory")  # no server has run from the default one
    child.sendline(str(tmp_path / "data"))
    child.expect("host name")
    child.sendline("chat.example.org")
    child.expect("passkey:")
    child.sendline("menu passkey")
    child.expect("again:")
    child.sendline("menu passkey")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    path = build.zip_path(tmp_path / "out", client, VERSION)
    with zipfile.ZipFile(path) as archive:
        sealed = archive.read(f"{path.stem}/{INVITE_FILENAME}")
    invite = open_invite(sealed, "menu passkey")
    assert invite.host == "chat.example.org"
    assert invite.tls_fingerprint is not None


def test_menu_skips_format_when_given() -> None:
    """--format answers the second menu; only the packages are asked."""
    answers = iter(["2"])
    choices = cli.ask_choices(ask=lambda _: next(answers), say=quiet, formats=("exe",))
    assert choices == cli.Choices(packages=(build.ROOT,), formats=("exe",))

"""Build the packages users receive: a one-file executable or a ZIP, invite inside.

Rules every builder here follows (and the tests pin):

- The output name carries the version (``PartyPoolClient-v0.1.0.zip``) and an
  existing file of that name is never replaced without ``force``, so a
  release already handed out cannot silently change under its name.
- Everything is built in a temporary directory and moved into place with one
  atomic rename, so a failed or interrupted build leaves no partial package.
- PyInstaller's log is kept next to where the package would have been when a
  build fails, because its last lines are what a user must send for help.

PyInstaller cannot cross-compile: an executable is built for the system this
runs on. The ZIP is the same on every system.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import attrs

from partypool.invite import INVITE_FILENAME, package_version

__all__ = [
    "CLIENT",
    "KINDS",
    "ROOT",
    "BuildError",
    "Package",
    "build_executable",
    "build_zip",
    "executable_path",
    "readme_path",
    "platform_label",
    "zip_path",
]

_HERE = Path(__file__).resolve().parent


class BuildError(Exception):
    """A package could not be built; ``str()`` says why and what to do."""


@attrs.frozen
class Package:
    """One kind of package: who it is for and which program it starts."""

    kind: str  #: ``client`` or ``root``: also the output sub-directory
    basename: str  #: file name stem, before ``-v<version>``
    module: str  #: the module holding ``main(argv=None) -> int``
    script: str  #: console script installed by the ZIP's setup
    entry: Path  #: PyInstaller entry script
    title: str  #: for menus and READMEs

    def available(self) -> bool:
        """Whether this checkout has the program (the root client may not exist)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def stem(self, version: str) -> str:
        return f"{self.basename}-v{version}"


CLIENT = Package(
    kind="client",
    basename="PartyPoolClient",
    module="partypool.client.main",
    script="partypool-client",
    entry=_HERE / "entry_client.py",
    title="chat client",
)
ROOT = Package(
    kind="root",
    basename="PartyPoolRoot",
    module="partypool.client.root",
    script="partypool-root",
    entry=_HERE / "entry_root.py",
    title="root (administrator) client",
)
KINDS = {"client": CLIENT, "root": ROOT}

#: Modules PyInstaller's import scan cannot see (chosen at run time by name).
_HIDDEN_IMPORTS = [
    "partypool.invite",
    "twisted.internet.asyncioreactor",
    "twisted.internet.ssl",
    "twisted.internet._sslverify",
    "twisted.protocols.tls",
    "scramp",
    "prompt_toolkit",
    "cryptography.hazmat.bindings._rust",
]
_COLLECT_SUBMODULES = {
    "client": ["partypool.client"],
    "root": ["partypool.client", "twisted.conch.ssh", "twisted.conch.client"],
}


def platform_label() -> str:
    """The system an executable built here runs on, for messages and docs."""
    system = {"Darwin": "macOS"}.get(platform.system(), platform.system())
    label = f"{system} {platform.machine()}"
    if system == "Linux":
        libc, libc_version = platform.libc_ver()
        if libc == "glibc":
            label += f", glibc {libc_version} or newer"
    return label


def executable_path(out: Path, package: Package, version: str) -> Path:
    """Where the executable for this system goes (``.exe`` on Windows)."""
    suffix = ".exe" if sys.platform == "win32" else ""
    return out / package.kind / (package.stem(version) + suffix)


def zip_path(out: Path, package: Package, version: str) -> Path:
    return out / package.kind / (package.stem(version) + ".zip")


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise BuildError(
            f"{target} already exists; packages are never replaced under the same "
            "version (raise the version in setup.cfg, or use --force)"
        )


def _check_buildable(package: Package, target: Path, force: bool) -> None:
    """Refuse before any work: an existing package, or a program not here."""
    _check_target(target, force)
    if not package.available():
        raise BuildError(
            f"the {package.title} ({package.module}) is not in this checkout"
        )


def _publish(built: Path, target: Path, force: bool) -> None:
    """Move a finished file into place in one step (same file system, atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_target(target, force)
    # Copy next to the target first: the temp dir may be on another file system,
    # and only a rename within one directory's file system is atomic.
    fd, staging_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    staging = Path(staging_name)
    try:
        shutil.copy2(built, staging)
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _source_root() -> Path:
    """The directory holding the ``partypool`` package being packaged."""
    spec = importlib.util.find_spec("partypool")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("cannot find the partypool package to package")
    return Path(list(spec.submodule_search_locations)[0]).parent


# --- executables -------------------------------------------------------------

Progress = Callable[[str], None]

_PHASES = [
    (re.compile(r"Analyzing|Looking for|Processing"), "analysing imports"),
    (re.compile(r"Building PYZ"), "compressing Python modules"),
    (re.compile(r"Building PKG"), "packing the archive"),
    (re.compile(r"Building EXE"), "writing the executable"),
    (re.compile(r"Build complete"), "done"),
]


def _pyinstaller_command(
    package: Package, stem: str, work: Path, invite_file: Path, metadata: Path
) -> list[str]:
    sep = os.pathsep  # PyInstaller's --add-data separator (":" or ";" on Windows)
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--onefile",
        "--console",
        "--noconfirm",
        "--log-level",
        "INFO",
        "--name",
        stem,
        "--distpath",
        str(work / "dist"),
        "--workpath",
        str(work / "build"),
        "--specpath",
        str(work),
        "--paths",
        str(_source_root()),
        "--add-data",
        f"{invite_file}{sep}.",
        "--add-data",
        f"{metadata}{sep}{metadata.name}",
    ]
    if sys.platform.startswith("linux"):
        # Debug symbols are most of a self-built libpython (23 MB unstripped).
        command.append("--strip")
    for module in _HIDDEN_IMPORTS:
        command += ["--hidden-import", module]
    for module in _COLLECT_SUBMODULES[package.kind]:
        command += ["--collect-submodules", module]
    return [*command, str(package.entry)]


def _follow(stream: TextIO, log: TextIO, progress: Progress) -> None:
    """Copy PyInstaller's output to the log, announcing each new phase once."""
    seen: set[str] = set()
    for line in stream:
        log.write(line)
        for pattern, phase in _PHASES:
            if phase not in seen and pattern.search(line):
                seen.add(phase)
                progress(phase)


def _write_dist_info(directory: Path, version: str) -> Path:
    """A minimal ``partypool-<version>.dist-info`` for the bundle.

    Frozen code then finds the version the usual way,
    ``importlib.metadata.version("partypool")`` (PyInstaller puts the bundle on
    ``sys.path``), so ``partypool.__version__`` is right there too. This is
    what ``--copy-metadata`` would do, without requiring an installed copy.
    """
    dist_info = directory / f"partypool-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: partypool\nVersion: {version}\n",
        encoding="utf-8",
    )
    return dist_info


def build_executable(
    package: Package,
    invite: bytes,
    out: Path,
    *,
    version: str | None = None,
    force: bool = False,
    progress: Progress = print,
) -> Path:
    """Freeze ``package`` into one file for this system, with ``invite`` inside."""
    version = version or package_version()
    target = executable_path(out, package, version)
    _check_buildable(package, target, force)
    if importlib.util.find_spec("PyInstaller") is None:
        raise BuildError("PyInstaller is not installed: pip install 'partypool[dist]'")
    stem = package.stem(version)
    with tempfile.TemporaryDirectory(prefix="partypool-build-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        invite_file = data / INVITE_FILENAME
        invite_file.write_bytes(invite)
        metadata = _write_dist_info(data, version)
        log_path = work / "pyinstaller.log"
        command = _pyinstaller_command(package, stem, work, invite_file, metadata)
        progress(f"building {target.name} for {platform_label()} with PyInstaller")
        started = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            status = _run_with_ticker(command, work, log, progress, started)
        built = work / "dist" / target.name
        if status != 0 or not built.is_file():
            kept = target.with_name(target.name + ".build.log")
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log_path, kept)
            tail = "".join(log_path.read_text(encoding="utf-8").splitlines(True)[-15:])
            raise BuildError(
                f"PyInstaller failed (status {status}); its log is in {kept}. "
                f"Last lines:\n{tail}"
            )
        _publish(built, target, force)
        stale_log = target.with_name(target.name + ".build.log")
        stale_log.unlink(missing_ok=True)
        _write_executable_readme(package, version, target)
    progress(f"  PyInstaller finished in {time.monotonic() - started:.0f} s")
    return target


def readme_path(executable: Path) -> Path:
    """The README handed out with an executable (how to open it, per system)."""
    return executable.with_name(executable.name.removesuffix(".exe") + ".README.txt")


def _write_executable_readme(package: Package, version: str, target: Path) -> Path:
    heading = f"Party Pool {package.title}, version {version}"
    text = _EXECUTABLE_README.format(
        title=package.title,
        version=version,
        underline="=" * len(heading),
        name=package.stem(version),
    )
    path = readme_path(target)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text.replace("\n", os.linesep), encoding="utf-8")
    os.replace(staging, path)
    return path


def _run_with_ticker(
    command: list[str], cwd: Path, log: TextIO, progress: Progress, started: float
) -> int:
    """Run PyInstaller; phases as they start, and a heartbeat every 15 s."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    done = threading.Event()

    def tick() -> None:
        while not done.wait(15):
            progress(f"  ... still building ({time.monotonic() - started:.0f} s)")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        assert process.stdout is not None
        _follow(process.stdout, log, lambda phase: progress(f"  {phase}"))
        return process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        done.set()
        ticker.join()


# --- ZIP packages --------------------------------------------------------------

_SETUP_SH = """\
#!/bin/sh
# Party Pool {title}: make a virtual environment, install, start.
# Usage: ./setup.sh [--setup-only] [options for {script}]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
new_enough() {{
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}}
if [ ! -x .venv/bin/{script} ]; then
    # Check the Python version before downloading anything (macOS ships 3.9).
    if [ -z "${{PYTHON:-}}" ]; then
        for candidate in python3 python3.13 python3.12 python3.11; do
            if command -v "$candidate" >/dev/null 2>&1 && new_enough "$candidate"
            then
                PYTHON=$candidate
                break
            fi
        done
    fi
    PYTHON=${{PYTHON:-python3}}
    if ! new_enough "$PYTHON"; then
        found=$("$PYTHON" -V 2>&1 || echo "not found")
        echo "Party Pool needs Python 3.11 or newer; $PYTHON is: $found" >&2
        echo "Install it from https://www.python.org/downloads/ (on macOS, or:" >&2
        echo "brew install python@3.12), then run: PYTHON=python3.12 sh setup.sh" >&2
        exit 1
    fi
    echo "Installing Party Pool {version} into $here/.venv ..."
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --disable-pip-version-check -q \\
        -r requirements.txt
    .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps .
fi
if [ "${{1:-}}" = "--setup-only" ]; then
    echo "Installed. Start with: $here/start.sh"
    exit 0
fi
exec .venv/bin/{script} --invite "$here/{invite}" "$@"
"""

_START_SH = """\
#!/bin/sh
# Start the Party Pool {title} installed by setup.sh.
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/.venv/bin/{script}" --invite "$here/{invite}" "$@"
"""

_SETUP_BAT = """\
@echo off
rem Party Pool {title}: make a virtual environment, install, start.
rem Usage: setup.bat [--setup-only] [options for {script}]
setlocal
cd /d "%~dp0"
{keep_window}
rem Set outside the block below: cmd expands %PIP% when it reads the block.
set "PIP=.venv\\Scripts\\python.exe -m pip install --disable-pip-version-check -q"
if exist ".venv\\Scripts\\{script}.exe" goto :installed
rem Check the Python version before downloading anything.
set "PY=py -3"
%PY% -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>nul || set "PY=python"
%PY% -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>nul || goto :old
echo Installing Party Pool {version} into %~dp0.venv ...
%PY% -m venv .venv || goto :fail
%PIP% -r requirements.txt || goto :fail
%PIP% --no-deps . || goto :fail
:installed
if "%~1"=="--setup-only" (
    echo Installed. Start with: %~dp0start.bat
    exit /b 0
)
".venv\\Scripts\\{script}.exe" --invite "%~dp0{invite}" %*
set "STATUS=%errorlevel%"
if not "%STATUS%"=="0" if defined DOUBLE_CLICKED pause
exit /b %STATUS%
:old
echo Party Pool needs Python 3.11 or newer: https://www.python.org/downloads/
echo (tick "Add python.exe to PATH" when installing), then run setup.bat again.
:fail
echo Installation failed.
if defined DOUBLE_CLICKED pause
exit /b 1
"""

_START_BAT = """\
@echo off
setlocal
{keep_window}
"%~dp0.venv\\Scripts\\{script}.exe" --invite "%~dp0{invite}" %*
set "STATUS=%errorlevel%"
if not "%STATUS%"=="0" if defined DOUBLE_CLICKED pause
exit /b %STATUS%
"""

# A double-clicked script runs as ``cmd /c ""…\\setup.bat" "`` in a window
# that closes when it ends; from a prompt, %cmdcmdline% is the shell's own.
# Then an error message stays readable until Enter.
_KEEP_WINDOW = (
    'set "DOUBLE_CLICKED="\n'
    'echo %cmdcmdline% | find /i "%~nx0" >nul && set "DOUBLE_CLICKED=1"'
)

_README = """\
Party Pool {title}, version {version}
{underline}

This package connects to one Party Pool server. The address of the server and
the fingerprints that prove it is the real one are in {invite}, encrypted with
the passkey the server's operator gave you; keep both private.

You need Python 3.11 or newer (https://www.python.org/downloads/) and an
internet connection for the first start (to install the libraries listed in
requirements.txt).

Linux and macOS:
    sh setup.sh            # first time: installs into .venv, then starts
    sh start.sh            # later

Windows:
    setup.bat              (first time: installs into .venv, then starts)
    start.bat              (later)

The program asks for the passkey; set PARTYPOOL_PASSKEY to skip the prompt.
`sh start.sh --help` lists the options.
"""

_EXECUTABLE_README = """\
Party Pool {title}, version {version}
{underline}

{name} is the whole program: nothing to install. It carries the address of
one Party Pool server and the fingerprints that prove it is the real one,
encrypted with the passkey the server's operator gives you. Start it and
type the passkey (or set PARTYPOOL_PASSKEY). `{name} --help` lists the options.

Windows ({name}.exe): double-click it. If SmartScreen says "Windows protected
your PC", choose "More info", then "Run anyway": the program is not signed.
After an error the window stays open until you press Enter.

macOS: the program is not signed by Apple, so macOS refuses the first start
("cannot be opened because the developer cannot be verified"). Either:
  - in Finder, Control-click (or right-click) the file, choose Open, then Open
    again in the dialog; on macOS 15 and later, try to open it once, then go
    to System Settings > Privacy & Security and choose "Open Anyway";
  - or in Terminal, in the folder that holds it:
        xattr -d com.apple.quarantine {name}
        chmod +x {name}
        ./{name}

Linux: chmod +x {name}, then run ./{name} in a terminal.
"""

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69", "wheel"]
build-backend = "setuptools.build_meta"
"""


def _install_requires() -> list[str]:
    """The runtime requirements, read from the project's setup.cfg (one place)."""
    setup_cfg = _source_root() / "setup.cfg"
    if not setup_cfg.is_file():
        import importlib.metadata

        requires = importlib.metadata.requires("partypool") or []
        return [r for r in requires if "extra ==" not in r]
    text = _project_setup_cfg().get("options", "install_requires", fallback="")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _project_setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(_source_root() / "setup.cfg", encoding="utf-8")
    return parser


def _package_data() -> dict[str, str]:
    """The project's package_data for partypool (SQL schema files and such)."""
    parser = _project_setup_cfg()
    if not parser.has_section("options.package_data"):
        return {"partypool.room.schema": "*.sql"}
    return {
        name: " ".join(value.split())
        for name, value in parser.items("options.package_data")
        if name.split(".")[0] == "partypool"
    }


def _package_setup_cfg(
    package: Package, version: str, requires: list[str], packages: set[str]
) -> str:
    """A setup.cfg for the ZIP: the client packages only, no server plugin."""
    scripts = [f"{CLIENT.script} = {CLIENT.module}:main"]
    if package is ROOT:
        scripts.append(f"{ROOT.script} = {ROOT.module}:main")
    requires_text = "".join(f"\n    {r}" for r in requires)
    package_data = "".join(
        f"{name} = {pattern}\n"
        for name, pattern in _package_data().items()
        if name in packages
    )
    scripts_text = "".join(f"\n    {s}" for s in scripts)
    return (
        "[metadata]\n"
        "name = partypool\n"
        f"version = {version}\n"
        f"description = Party Pool {package.title}\n\n"
        "[options]\n"
        "python_requires = >=3.11\n"
        "packages = find_namespace:\n"
        f"install_requires ={requires_text}\n\n"
        "[options.packages.find]\n"
        "include = partypool*\n\n"
        "[options.package_data]\n"
        f"{package_data}\n"
        "[options.entry_points]\n"
        f"console_scripts ={scripts_text}\n"
    )


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` under ``root``, if it is ours."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> Iterator[str]:
    """Every ``partypool`` module ``path`` imports, at any depth of its code
    (imports inside functions too, so lazily imported modules are kept)."""
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from partypool.x import y``: y may be a module or a name in x.
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        yield from (n for n in names if n.split(".")[0] == "partypool")


def _source_files() -> list[tuple[Path, str]]:
    """The sources the client programs run: (file, name in the ZIP).

    Starting from every module of ``partypool.client`` (the chat and root
    clients), follow the imports, with each package's ``__init__``: the
    clients need the invite, wire and TLS helpers, not the server, the admin
    side or the benchmark.
    """
    root = _source_root()
    seen: set[Path] = set()
    todo = sorted((root / "partypool" / "client").glob("*.py"))
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for name in _imported_modules(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # the packages on the way too
                found = _module_file(root, ".".join(parts[:depth]))
                if found is not None:
                    todo.append(found)
    return [(path, path.relative_to(root).as_posix()) for path in sorted(seen)]


def _add_text(archive: zipfile.ZipFile, name: str, text: str, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (0o100000 | mode) << 16  # regular file + permissions
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)


def build_zip(
    package: Package,
    invite: bytes,
    out: Path,
    *,
    version: str | None = None,
    force: bool = False,
    progress: Progress = print,
) -> Path:
    """Source, invite, requirements and setup scripts in one ZIP, for any system."""
    version = version or package_version()
    target = zip_path(out, package, version)
    _check_buildable(package, target, force)
    top = package.stem(version)
    fields = {
        "title": package.title,
        "script": package.script,
        "version": version,
        "invite": INVITE_FILENAME,
    }
    readme = _README.format(
        underline="=" * len(f"Party Pool {package.title}, version {version}"),
        **fields,
    )
    requires = _install_requires()
    progress(f"building {target.name}")
    with tempfile.TemporaryDirectory(prefix="partypool-zip-") as tmp:
        built = Path(tmp) / target.name
        with zipfile.ZipFile(built, "w", zipfile.ZIP_DEFLATED) as archive:
            sources = _source_files()
            for path, name in sources:
                archive.write(path, f"{top}/{name}")
            _add_text(archive, f"{top}/{INVITE_FILENAME}", invite.decode(), 0o600)
            _add_text(
                archive, f"{top}/requirements.txt", "\n".join(requires) + "\n", 0o644
            )
            _add_text(archive, f"{top}/pyproject.toml", _PYPROJECT, 0o644)
            _add_text(
                archive,
                f"{top}/setup.cfg",
                _package_setup_cfg(
                    package,
                    version,
                    requires,
                    {name.rpartition("/")[0].replace("/", ".") for _, name in sources},
                ),
                0o644,
            )
            _add_text(archive, f"{top}/setup.sh", _SETUP_SH.format(**fields), 0o755)
            _add_text(archive, f"{top}/start.sh", _START_SH.format(**fields), 0o755)
            bat_fields = {**fields, "keep_window": _KEEP_WINDOW}
            bat = _SETUP_BAT.format(**bat_fields).replace("\n", "\r\n")
            _add_text(archive, f"{top}/setup.bat", bat, 0o644)
            start_bat = _START_BAT.format(**bat_fields).replace("\n", "\r\n")
            _add_text(archive, f"{top}/start.bat", start_bat, 0o644)
            _add_text(archive, f"{top}/README.txt", readme, 0o644)
        _publish(built, target, force)
    return target

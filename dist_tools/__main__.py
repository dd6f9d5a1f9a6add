"""``partypool-dist``: build the client and root packages for one server.

Run without ``--client``/``--root`` in a terminal, it asks like the old
program's menu did (which packages, which formats, the host, the passkey);
every answer also has a flag, so scripts and CI never see a prompt::

    partypool-dist --client --root --format both --host chat.example.org \\
        --data-dir /var/lib/partypool --out dist --passkey-file passkey.txt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import attrs

from dist_tools.build import (
    CLIENT,
    ROOT,
    BuildError,
    Package,
    build_executable,
    build_zip,
    platform_label,
)
from partypool.datadir import read_server_record
from partypool.identity import default_data_dir, public_host_guess
from partypool.invite import (
    InviteError,
    add_server_arguments,
    describe,
    invite_from_arguments,
    package_version,
    read_passkey,
    seal_invite,
)

FORMATS = ("exe", "zip", "both")


@attrs.frozen
class Choices:
    """What to build: the packages and the formats."""

    packages: tuple[Package, ...]
    formats: tuple[str, ...]  # "exe" and/or "zip"


def _menu(
    title: str,
    options: list[str],
    ask: Callable[[str], str],
    say: Callable[[str], None],
) -> int | None:
    """Numbered menu, seed style; the last option goes back (returns None)."""
    say("")
    say(title)
    for number, label in enumerate(options, 1):
        say(f"  [{number}] {label}")
    while True:
        answer = ask(f"Enter your choice (1-{len(options)}): ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            choice = int(answer)
            return None if choice == len(options) else choice
        say(f"Please type a number from 1 to {len(options)}.")


def ask_choices(
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
    formats: tuple[str, ...] | None = None,
) -> Choices | None:
    """The interactive menus: packages, then formats (unless given). None: cancel."""
    which = _menu(
        f"Party Pool packages (version {package_version()})",
        [
            "Client package only",
            "Root/admin package only",
            "Both client & root packages",
            "Back",
        ],
        ask,
        say,
    )
    if which is None:
        return None
    packages = {1: (CLIENT,), 2: (ROOT,), 3: (CLIENT, ROOT)}[which]
    if formats:
        return Choices(packages=packages, formats=formats)
    how = _menu(
        "Format",
        [
            f"Executable for this system ({platform_label()})",
            "ZIP: source + setup scripts (any system with Python 3.11+)",
            "Both",
            "Back",
        ],
        ask,
        say,
    )
    if how is None:
        return None
    formats = {1: ("exe",), 2: ("zip",), 3: ("exe", "zip")}[how]
    return Choices(packages=packages, formats=formats)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="partypool-dist",
        description="Build Party Pool client/root packages with this server's "
        "invite inside. Executables are built for the system this runs on "
        f"({platform_label()}); PyInstaller cannot cross-build.",
    )
    p.add_argument("--client", action="store_true", help="build the chat client")
    p.add_argument("--root", action="store_true", help="build the root client")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="exe (one-file executable for this system), zip, or both",
    )
    add_server_arguments(p)
    p.add_argument(
        "--invite-file",
        type=Path,
        help="use this sealed invite (from partypool-invite) instead of reading "
        "--data-dir and asking for the passkey; how CI builds real packages "
        "without knowing the passkey",
    )
    p.add_argument(
        "--out", type=Path, default=Path("dist"), help="output directory (dist)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace packages that already exist for this version",
    )
    p.add_argument("--version", action="version", version=package_version())
    return p


def _formats(flag: str | None) -> tuple[str, ...] | None:
    """``--format`` as the tuple of formats to build."""
    if flag is None:
        return None
    return ("exe", "zip") if flag == "both" else (flag,)


def _sealed_invite(args: argparse.Namespace) -> bytes:
    """The invite to embed: a given file, or made from the data dir + passkey."""
    if args.invite_file:
        try:
            data = args.invite_file.read_bytes()
        except OSError as e:
            raise InviteError(f"cannot read {args.invite_file}: {e.strerror}") from e
        if b'"partypool-invite"' not in data:
            raise InviteError(f"{args.invite_file} is not a Party Pool invite")
        return data
    invite = invite_from_arguments(args)
    passkey = read_passkey(
        args.passkey_file, data_dir=args.data_dir or default_data_dir()
    )
    print(f"Packages for {describe(invite)}")
    return seal_invite(invite, passkey)


def ask_host(data_dir: Path, ask: Callable[[str], str] = input) -> str:
    """The address users reach the server at, offering the recorded or
    guessed one (Enter takes it)."""
    record = read_server_record(data_dir)
    default = (record.host if record else None) or public_host_guess()
    answer = ask(f"Public host name or address of the server [{default}]: ")
    return answer.strip() or default


def main(argv: list[str] | None = None) -> int:
    """Build the requested packages; 0 if all were built, 1 otherwise."""
    args = parser().parse_args(argv)
    interactive = not (args.client or args.root)
    if interactive:
        if not sys.stdin.isatty():
            print(
                "partypool-dist: choose --client and/or --root (no terminal to ask)",
                file=sys.stderr,
            )
            return 2
        try:
            choices = ask_choices(formats=_formats(args.format))
            if choices is None:
                print("Cancelled.")
                return 0
            if not args.invite_file:
                default = default_data_dir()
                if args.data_dir is None and read_server_record(default) is None:
                    # No server has run from the default directory: ask where.
                    answer = input(f"Server data directory [{default}]: ").strip()
                    args.data_dir = Path(answer) if answer else default
                if not args.host:
                    args.host = ask_host(args.data_dir or default)
        except (EOFError, KeyboardInterrupt):
            print("\nCancelled.")
            return 1
    else:
        packages = tuple(
            p for p, wanted in ((CLIENT, args.client), (ROOT, args.root)) if wanted
        )
        choices = Choices(packages=packages, formats=_formats(args.format or "both"))
    try:
        sealed = _sealed_invite(args)
    except (InviteError, EOFError, KeyboardInterrupt) as e:
        print(f"partypool-dist: {e or 'cancelled'}", file=sys.stderr)
        return 1
    if "exe" in choices.formats:
        print(f"Executables will be built for {platform_label()} only.")
    failures = built = 0
    for package in choices.packages:
        for fmt in choices.formats:
            build = build_executable if fmt == "exe" else build_zip
            try:
                path = build(package, sealed, args.out, force=args.force)
            except BuildError as e:
                failures += 1
                print(f"FAILED {package.basename} {fmt}: {e}", file=sys.stderr)
            except KeyboardInterrupt:
                print(
                    "\nInterrupted; nothing partial was left behind.", file=sys.stderr
                )
                return 130
            else:
                built += 1
                print(f"built {path}")
    if built:
        print("Give your users these files, and tell them the passkey.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

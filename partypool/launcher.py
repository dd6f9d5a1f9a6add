"""``partypool``: one command for the operator, like the old ``python main.py``.

Without arguments, in a terminal, it shows the old program's menu (type a
number and Enter; each sub-menu has Back).  Every choice is also a
subcommand, for scripts::

    partypool serve [options]     the server in the foreground
    partypool package [options]   client and root packages (partypool-dist)
    partypool invite [options]    the invite file alone (partypool-invite)
    partypool root [options]      the admin shell (partypool-root)
    partypool client [options]    join the chat (partypool-client)
    partypool bench [options]     the benchmark (python -m partypool.bench)

Each subcommand is the existing program's own ``main``, called with the rest
of the command line; nothing is copied (``serve`` is `partypool.serve`:
twistd's runner with the plugin).  The menu runs each choice as a child
process, so a client or a server that ends brings the menu back, and each
child picks its own reactor.  Nothing here imports one.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from partypool.identity import default_data_dir
from partypool.invite import INVITE_FILENAME, package_version

PROG = "partypool"
#: subcommand → (entry point, what it does)
COMMANDS = {
    "serve": ("partypool.serve:main", "run the server in the foreground"),
    "package": ("dist_tools.__main__:main", "build client and root packages"),
    "invite": ("partypool.invite:main", "write the invite file for this server"),
    "root": ("partypool.client.root:main", "administer the server (root shell)"),
    "client": ("partypool.client.main:main", "join the chat"),
    "bench": ("partypool.bench.run:main", "run the benchmark"),
}
#: The menu: (label, subcommand); the last one leaves.
MENU = [
    ("Start Server", "serve"),
    ("Generate Distribution Packages", "package"),
    ("Login as Administrator (Root)", "root"),
    ("Login as Client", "client"),
    ("Exit", None),
]
Ask = Callable[[str], str]
Say = Callable[[str], None]


def usage_text() -> str:
    lines = [
        f"Usage: {PROG} [command [options]]",
        "",
        "Without a command, in a terminal: a menu. Commands:",
    ]
    lines += [f"  {name:<9}{summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", f"`{PROG} <command> --help` describes each command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``partypool``: the menu, or one subcommand; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            print(usage_text(), file=sys.stderr)
            return 2
        return menu()
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help", "help"):
        print(usage_text())
        return 0
    if name == "--version":
        print(f"{PROG} {package_version()}")
        return 0
    if name not in COMMANDS:
        print(
            f"{PROG}: unknown command {name!r}; `{PROG} --help` lists them",
            file=sys.stderr,
        )
        return 2
    return run_command(name, rest)


def run_command(name: str, argv: list[str]) -> int:
    """Call the subcommand's own entry point with the rest of the line."""
    module, _, function = COMMANDS[name][0].partition(":")
    entry = getattr(importlib.import_module(module), function)
    return int(entry(argv) or 0)


# --- the menu --------------------------------------------------------------------


def choose(title: str, labels: Sequence[str], ask: Ask, say: Say) -> int:
    """A numbered menu, seed style: the number of the choice (from 1)."""
    say("")
    say(title)
    for number, label in enumerate(labels, 1):
        say(f"  [{number}] {label}")
    while True:
        answer = ask(f"Enter your choice (1-{len(labels)}): ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(labels):
            return int(answer)
        if answer:
            say(f"Please type a number from 1 to {len(labels)}, then Enter.")


def menu_arguments(command: str, data_dir: Path) -> list[str]:
    """What a menu choice runs: the clients use this machine's invite, which
    ``partypool serve`` wrote, if there is one."""
    invite = data_dir / INVITE_FILENAME
    if command in ("client", "root") and invite.is_file():
        return [command, "--invite", str(invite)]
    return [command]


def run_child(arguments: list[str]) -> int:
    """``python -m partypool <arguments>``; Ctrl-C goes to it, not to the menu.

    The menu catches SIGINT with a handler that does nothing rather than
    ignoring it: an ignored signal stays ignored in the child, and a server
    that cannot see Ctrl-C cannot be stopped with it.

    A hangup (the terminal closed) or SIGTERM ends the menu, as it ends any
    program in a terminal, but only after it has stopped the child with
    SIGTERM: a server takes SIGHUP to mean "reload" and would run on with
    nobody to see it or stop it.
    """
    children: list[subprocess.Popen] = []
    told: list[int] = []

    def stop_child(signum: int, frame: object) -> None:
        told.append(signum)
        for child in children:
            child.terminate()

    # In place before the child exists: a hangup while it starts stops it too.
    handlers = {signal.SIGINT: _ignore, signal.SIGTERM: stop_child}
    if hasattr(signal, "SIGHUP"):  # not on Windows
        handlers[signal.SIGHUP] = stop_child
    previous = {signum: signal.signal(signum, h) for signum, h in handlers.items()}
    try:
        children.append(
            subprocess.Popen([sys.executable, "-m", "partypool", *arguments])
        )
        if told:  # told to end while the child was being started
            children[0].terminate()
        status = children[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if told:
        os.kill(os.getpid(), told[0])  # the menu's own default action now
    return status


def _ignore(signum: int, frame: object) -> None:
    """SIGINT while a child runs: the child handles it."""


def menu(
    ask: Ask = input,
    say: Say = print,
    run: Callable[[list[str]], int] = run_child,
) -> int:
    """The main menu until Exit (or end of input)."""
    labels = [label for label, _ in MENU]
    try:
        while True:
            choice = choose(f"Party Pool {package_version()}", labels, ask, say)
            command = MENU[choice - 1][1]
            if command is None:
                return 0
            status = run(menu_arguments(command, default_data_dir()))
            if status not in (0, 130, -signal.SIGINT):
                say(f"({command} ended with status {status})")
    except (EOFError, KeyboardInterrupt):
        say("")
        return 0


__all__ = ["COMMANDS", "MENU", "main", "menu"]

"""
``partypool-client``: join a Party Pool chat room.

Where the server is comes from an invite (``--invite FILE``, or the one
bundled in a frozen build), from ``--host``/``--port``/``--fingerprint``, or
from a question; ``--host`` and ``--port`` given with an invite win over its
address (the invite still pins the certificate), and a line says so. The
passkey comes from ``PARTYPOOL_PASSKEY`` or a hidden prompt; it also unlocks
the invite, so it is asked first. With ``--root`` the login is root's, with
the root password (``PARTYPOOL_ROOT_PASSWORD`` or a hidden prompt).

Output never fails for want of a character: standard output and error
replace what their encoding cannot show (a Windows pipe is cp1252).

The asyncio reactor is installed before anything imports
C{twisted.internet.reactor}: prompt_toolkit runs on asyncio, and a frozen
program must not depend on Twisted picking a default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from pathlib import Path

from twisted.python.failure import Failure

from partypool.client.connect import ServerAddress
from partypool.client.known_servers import KnownServers, default_path
from partypool.client.script import ScriptView, read_stdin
from partypool.client.session import (
    DEFAULT_GIVE_UP_AFTER,
    DEFAULT_HISTORY,
    EXIT_ERROR,
    ChatSession,
)
from partypool.client.tui import TerminalView
from partypool.invite import InviteError, embedded_invite, open_invite
from partypool.room.auth import DEFAULT_ITERATIONS

DEFAULT_PORT = 12345
PASSKEY_ENV = "PARTYPOOL_PASSKEY"
ROOT_PASSWORD_ENV = "PARTYPOOL_ROOT_PASSWORD"


class SetupError(Exception):
    """Something to tell the user before any connection is made."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="partypool-client",
        description="Join a Party Pool chat room. The passkey is read from "
        f"{PASSKEY_ENV} or asked for.",
    )
    where = parser.add_argument_group("where the server is")
    where.add_argument("--invite", metavar="FILE", help="invite file from the admin")
    where.add_argument("--host", help="server host name or address")
    where.add_argument(
        "--port",
        type=int,
        help=f"chat port (default: the invite's, else {DEFAULT_PORT}); with an "
        "invite, reach the same server on another port (a forwarded one)",
    )
    where.add_argument(
        "--fingerprint",
        help="expected SHA-256 fingerprint of the server's TLS certificate",
    )
    where.add_argument(
        "--insecure-plain",
        action="store_true",
        help="connect without TLS (only for servers run with --no-tls)",
    )
    where.add_argument(
        "--known-servers",
        metavar="PATH",
        type=Path,
        help=f"certificate fingerprints seen before (default: {default_path()})",
    )
    where.add_argument(
        "--min-iterations",
        type=int,
        metavar="COUNT",
        default=DEFAULT_ITERATIONS,
        help="accept a server asking for this few PBKDF2 iterations "
        "(default: %(default)d; fewer make the passkey easier to guess)",
    )
    parser.add_argument("--name", help="the name to chat under")
    parser.add_argument(
        "--root",
        action="store_true",
        help=f"log in as root with the root password ({ROOT_PASSWORD_ENV} or "
        "asked for): join as root and run admin commands with /admin",
    )
    parser.add_argument(
        "--history",
        type=int,
        metavar="COUNT",
        default=DEFAULT_HISTORY,
        help="room messages to show on joining (default: %(default)d, 0: none)",
    )
    parser.add_argument(
        "--no-timestamps",
        action="store_true",
        help="do not show the local time on each line",
    )
    parser.add_argument(
        "--script",
        action="store_true",
        help="no terminal UI: read lines from stdin, print events to stdout",
    )
    parser.add_argument(
        "--give-up-after",
        type=float,
        metavar="SECONDS",
        default=DEFAULT_GIVE_UP_AFTER,
        help="stop reconnecting after this long (default: %(default)g)",
    )
    options = parser.parse_args(argv)
    if options.invite and (options.fingerprint or options.insecure_plain):
        parser.error("--invite already says how to trust the server")
    if options.insecure_plain and options.fingerprint:
        parser.error("--fingerprint needs TLS; drop --insecure-plain")
    if options.root and options.name not in (None, "root"):
        parser.error("--root joins as root; drop --name")
    if not 4096 <= options.min_iterations <= 10_000_000:
        parser.error("--min-iterations must be between 4096 and 10000000")
    if options.history < 0:
        parser.error("--history must not be negative")
    return options


def install_reactor() -> None:
    """Install Twisted's asyncio reactor on a selector loop (prompt_toolkit
    needs asyncio; Twisted needs a selector loop, also on Windows)."""
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a Twisted reactor is already installed")
    from twisted.internet import asyncioreactor

    loop = asyncio.SelectorEventLoop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)


def ask_host(
    default_port: int = DEFAULT_PORT,
    prompt: str = "Server address (host or host:port): ",
) -> tuple[str, int]:
    """Ask where the server is: ``host``, ``host:port`` or ``[v6]:port``."""
    answer = input(prompt).strip()
    if not answer:
        raise SetupError("no server address given")
    host, colon, port = answer.rpartition(":")
    bracketed_or_v4 = ":" not in host or host.startswith("[")
    if colon and port.isascii() and port.isdigit() and bracketed_or_v4:
        return host.strip("[]"), int(port)
    return answer.strip("[]"), default_port


def ask_passkey() -> str:
    """The passkey, typed without echo."""
    return ask_secret("Enter passkey: ", PASSKEY_ENV)


def ask_secret(prompt: str, variable: str) -> str:
    """A secret typed without echo; nothing typed is a L{SetupError}."""
    try:
        secret = getpass.getpass(prompt)
    except EOFError:
        secret = ""
    if not secret:
        raise SetupError(f"nothing typed at {prompt.strip()!r} (or set {variable})")
    return secret


def server_address(options: argparse.Namespace) -> tuple[ServerAddress, str]:
    """Where to connect and the secret to log in with, asking for what is
    missing."""
    known = KnownServers(options.known_servers or default_path())
    invite_data: bytes | None = None
    if options.invite:
        try:
            invite_data = Path(options.invite).read_bytes()
        except OSError as e:
            raise SetupError(f"cannot read the invite: {e}") from e
    elif not options.host:
        invite_data = embedded_invite()
    host, port = options.host, options.port or DEFAULT_PORT
    if invite_data is None and not host:
        host, port = ask_host()
    passkey = ""  # root needs it only to open an invite
    if invite_data is not None or not options.root:
        passkey = os.environ.get(PASSKEY_ENV) or ask_passkey()
    if invite_data is None:
        address = ServerAddress(
            host,
            port,
            tls=not options.insecure_plain,
            pin=options.fingerprint,
            known=known,
        )
    else:
        try:
            invite = open_invite(invite_data, passkey)
        except InviteError as e:
            raise SetupError(f"cannot open the invite: {e}") from e
        address = ServerAddress(
            options.host or invite.host,
            options.port or invite.chat_port,
            tls=invite.tls,
            pin=invite.tls_fingerprint,
            known=known,
        )
        if (address.host, address.port) != (invite.host, invite.chat_port):
            print(
                f"partypool-client: connecting to {address.host} port "
                f"{address.port} as --host/--port say, not to the invite's "
                f"{invite.host} port {invite.chat_port} (its certificate pin "
                "still applies)",
                file=sys.stderr,
            )
    if not address.tls:
        print(
            "partypool-client: WARNING: plain TCP, no TLS: anyone on the network "
            "can read and alter the chat.",
            file=sys.stderr,
        )
    if options.root:
        secret = os.environ.get(ROOT_PASSWORD_ENV) or ask_secret(
            "root password: ", ROOT_PASSWORD_ENV
        )
        return address, secret
    return address, passkey


def never_fail_output() -> None:
    """Replace characters the terminal or pipe cannot encode instead of
    raising: another user's emoji must not end our session."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the exit status (see L{partypool.client.session})."""
    never_fail_output()
    options = parse_args(argv)
    install_reactor()
    try:
        address, passkey = server_address(options)
    except SetupError as e:
        print(f"partypool-client: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (EOFError, KeyboardInterrupt):
        print("\npartypool-client: cancelled", file=sys.stderr)
        return EXIT_ERROR
    return run(options, address, passkey)


def run(options: argparse.Namespace, address: ServerAddress, passkey: str) -> int:
    """Chat until the session ends; the reactor runs only in here."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.error import ReactorNotRunning

    view: ScriptView | TerminalView
    if options.script:
        view = ScriptView(sys.stdout, sys.stderr, names_from_input=options.name is None)
    else:
        view = TerminalView(timestamps=not options.no_timestamps)
    session = ChatSession(
        address=address,
        secret=passkey,
        view=view,
        reactor=reactor,
        name=options.name,
        root=options.root,
        min_iterations=options.min_iterations,
        history=options.history,
        give_up_after=options.give_up_after,
    )
    view.session = session
    status: list[int] = []
    finished: Deferred[None] = Deferred()

    def start() -> None:
        if isinstance(view, ScriptView):
            read_stdin(view, reactor, sys.stdin)
        session.run().addCallback(end).addErrback(crashed)

    def end(result: int) -> None:
        status.append(result)
        if isinstance(view, TerminalView):
            view.close()
        finished.callback(None)
        # Already stopping when Ctrl-C reached the reactor first.
        with contextlib.suppress(ReactorNotRunning):
            reactor.stop()

    def crashed(failure: Failure) -> None:
        view.failure(f"internal error: {failure.getErrorMessage()}")
        failure.printTraceback(sys.stderr)
        end(EXIT_ERROR)

    def leave() -> Deferred[None] | None:
        """On a signal, say goodbye to the server before the reactor stops."""
        if finished.called:
            return None
        session.quit()
        return finished

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", leave)
    reactor.run()
    return status[0] if status else EXIT_ERROR

"""
``partypool-client``: join a Party Pool chat room.

Where the server is comes from an invite (``--invite FILE``, or the one
bundled in a frozen build), from ``--host``/``--port``/``--fingerprint``, or
from a question. The passkey comes from ``PARTYPOOL_PASSKEY`` or a hidden
prompt; it also unlocks the invite, so it is asked first.

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
from partypool.client.session import DEFAULT_GIVE_UP_AFTER, EXIT_ERROR, ChatSession
from partypool.client.tui import TerminalView
from partypool.invite import InviteError, embedded_invite, open_invite

DEFAULT_PORT = 12345
PASSKEY_ENV = "PARTYPOOL_PASSKEY"


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
    parser.add_argument("--name", help="the name to chat under")
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
    if options.invite and (
        options.host or options.fingerprint or options.insecure_plain
    ):
        parser.error("--invite already says where the server is and how to trust it")
    if options.insecure_plain and options.fingerprint:
        parser.error("--fingerprint needs TLS; drop --insecure-plain")
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


def ask_host() -> tuple[str, int]:
    """Ask where the server is: ``host``, ``host:port`` or ``[v6]:port``."""
    answer = input("Server address (host or host:port): ").strip()
    if not answer:
        raise SetupError("no server address given")
    host, colon, port = answer.rpartition(":")
    if colon and port.isdigit() and (":" not in host or host.startswith("[")):
        return host.strip("[]"), int(port)
    return answer.strip("[]"), DEFAULT_PORT


def ask_passkey() -> str:
    """The passkey, typed without echo."""
    try:
        passkey = getpass.getpass("Enter passkey: ")
    except EOFError:
        passkey = ""
    if not passkey:
        raise SetupError(f"no passkey given (type it, or set {PASSKEY_ENV})")
    return passkey


def server_address(options: argparse.Namespace) -> tuple[ServerAddress, str]:
    """Where to connect and the passkey, asking for what is missing."""
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
            invite.host,
            options.port or invite.chat_port,
            tls=invite.tls,
            pin=invite.tls_fingerprint,
            known=known,
        )
    if not address.tls:
        print(
            "partypool-client: WARNING: plain TCP, no TLS: anyone on the network "
            "can read and alter the chat.",
            file=sys.stderr,
        )
    return address, passkey


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the exit status (see L{partypool.client.session})."""
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
    view = ScriptView(sys.stdout, sys.stderr) if options.script else TerminalView()
    session = ChatSession(
        address=address,
        passkey=passkey,
        view=view,
        reactor=reactor,
        name=options.name,
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

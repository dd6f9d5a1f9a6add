"""
``partypool-root``: administer a Party Pool server over its admin port (SSH).

``partypool-root -c "list-conn"`` runs one root command and exits with its
status (0 or 1); without ``-c`` it is an interactive shell on a terminal,
and runs the lines of standard input otherwise.  Any failure to
connect or log in exits 255, as ``ssh`` does, so scripts can tell "the
command failed" from "it never ran".

Where the server is comes from an invite (``--invite FILE``, opened with the
chat passkey from ``PARTYPOOL_PASSKEY`` or a prompt; or the one bundled in a
frozen build), from ``--host``/``--port``, or from a question, as
``partypool-client`` asks.  The host key is pinned by the invite or
``--host-key-fingerprint``, else must be known from an earlier login; a key
seen for the first time is shown and the user asked, as OpenSSH asks (on a
terminal, in the shell), or trusted because ``--accept-new-host-key`` says so;
``-c`` and piped commands refuse it otherwise (see
L{partypool.client.admin_connect}).  Root logs in with ``--identity KEYFILE``
or the root password (``PARTYPOOL_ROOT_PASSWORD``, or a hidden prompt once
the host key is trusted: nobody types it for the wrong server or port).

The asyncio reactor is installed first, as ``partypool-client`` does, and
L{partypool.client.admin_connect} is imported only after that: conch's
user-auth module imports C{twisted.internet.reactor}.

The shell edits lines locally with prompt_toolkit and sends each finished line
as one SSH ``exec`` on the same login, rather than asking for a remote pty and
letting the server's HistoricRecvLine edit in raw mode.  Raw mode needs stdin
to be pollable by the reactor (on Windows ``select`` takes only sockets, so it
would need a reader thread) and key presses as VT sequences (Windows consoles
send those only in VT input mode); prompt_toolkit reads Windows consoles
natively, and ``partypool-client`` already relies on it.  Each command's
output is streamed as it arrives and its exit status is known, so the prompt
comes back exactly when the command is done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from prompt_toolkit import PromptSession
from twisted.conch.ssh import keys
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from partypool.client.known_servers import KnownServers, default_admin_hosts_path
from partypool.client.main import (
    PASSKEY_ENV,
    SetupError,
    ask_host,
    ask_passkey,
    install_reactor,
)
from partypool.invite import InviteError, embedded_invite, open_invite

if TYPE_CHECKING:
    from partypool.client.admin_connect import AdminConnection, Credentials

DEFAULT_PORT = 12346
PASSWORD_ENV = "PARTYPOOL_ROOT_PASSWORD"
#: Could not connect or log in (the remote commands exit 0 or 1).
EXIT_NOT_RUN = 255
PROG = "partypool-root"
#: Lines that end the session here instead of being sent.
EXIT_WORDS = ("exit", "logout")
#: The prompt of the server's own shell (partypool.admin.shell), so root sees
#: the same one on both.
PROMPT = "root@partypool> "
#: What to do once logged in; returns the exit status.
Session = Callable[["AdminConnection"], Coroutine[Any, Any, int]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Administer a Party Pool server over its admin port (SSH). "
        f"The root password is read from {PASSWORD_ENV} or asked for.",
    )
    parser.add_argument(
        "-c",
        dest="command",
        metavar="COMMAND",
        help='run one root command (e.g. "list-conn") and exit with its status',
    )
    where = parser.add_argument_group("where the server is")
    where.add_argument(
        "--invite",
        metavar="FILE",
        help=f"invite file (opened with the chat passkey, or {PASSKEY_ENV})",
    )
    where.add_argument("--host", help="server host name or address")
    where.add_argument("--port", type=int, help=f"admin port (default: {DEFAULT_PORT})")
    where.add_argument(
        "--host-key-fingerprint",
        metavar="SHA256:…",
        help="expected fingerprint of the admin port's SSH host key",
    )
    where.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust a host key seen for the first time without asking "
        "(it is remembered once root has logged in)",
    )
    where.add_argument(
        "--known-hosts",
        metavar="PATH",
        type=Path,
        help=f"SSH host keys seen before (default: {default_admin_hosts_path()})",
    )
    parser.add_argument(
        "--identity",
        metavar="KEYFILE",
        type=Path,
        help="log in with this OpenSSH private key instead of the password",
    )
    options = parser.parse_args(argv)
    if options.invite and (options.host or options.host_key_fingerprint):
        parser.error("--invite already says where the server is and how to trust it")
    pin = options.host_key_fingerprint
    if pin is not None and not options.host:
        parser.error("--host-key-fingerprint goes with --host")
    if pin is not None and not pin.startswith("SHA256:"):
        parser.error("--host-key-fingerprint: expected SHA256:… as ssh shows it")
    return options


@attrs.frozen
class Target:
    """The admin port to reach and the pinned host key, if any."""

    host: str
    port: int
    pin: str | None


def find_target(options: argparse.Namespace) -> Target:
    """Where to connect: ``--host``, else the invite given or bundled, else
    the user's answer."""
    if options.host:
        return Target(
            options.host, options.port or DEFAULT_PORT, options.host_key_fingerprint
        )
    if options.invite:
        try:
            data = Path(options.invite).read_bytes()
        except OSError as e:
            raise SetupError(f"cannot read the invite: {e}") from e
    elif (data := embedded_invite()) is None:
        if not sys.stdin.isatty():
            raise SetupError("say where the server is: --invite FILE or --host HOST")
        # Not the chat address the client asks for: the menu asks both.
        host, port = ask_host(
            DEFAULT_PORT,
            "Admin (SSH) address, not the chat one "
            f"(host or host:port; port {DEFAULT_PORT} if left out): ",
        )
        return Target(host, options.port or port, None)
    try:
        invite = open_invite(data, os.environ.get(PASSKEY_ENV) or ask_passkey())
    except InviteError as e:
        raise SetupError(f"cannot open the invite: {e}") from e
    port = options.port or invite.admin_port
    if port is None:
        raise SetupError("the invite names no admin port; give --port")
    return Target(invite.host, port, invite.ssh_fingerprint)


def read_credentials(options: argparse.Namespace) -> Credentials:
    """The key from ``--identity``, else the root password from the
    environment, else a prompt once the host key is trusted."""
    from partypool.client.admin_connect import Credentials

    if options.identity is not None:
        return Credentials(key=load_key(str(options.identity)))
    if password := os.environ.get(PASSWORD_ENV):
        return Credentials(password=password.encode("utf-8"))
    return Credentials(ask_password=ask_password_later)


def ask_password_later() -> Deferred[bytes]:
    """The root password, typed without echo, read off the reactor thread
    (the connection stays served meanwhile)."""
    from twisted.internet.threads import deferToThread

    def ask() -> bytes:
        return _ask("root password: ", f"type it, or set {PASSWORD_ENV}").encode()

    return deferToThread(ask)


def confirm_by_asking(fingerprint: str) -> Deferred[bool]:
    """OpenSSH's question about a host key seen for the first time; only
    ``yes`` (or the fingerprint itself) trusts it."""
    from twisted.internet.threads import deferToThread

    def ask() -> bool:
        print(
            "The authenticity of the admin port can't be established.\n"
            f"Its SSH host key fingerprint is {fingerprint}.\n"
            "Compare it with the one the server logged at start-up.",
            file=sys.stderr,
        )
        try:
            answer = input("Are you sure you want to continue connecting (yes/no)? ")
        except EOFError:
            return False
        return answer.strip() in ("yes", fingerprint)

    return deferToThread(ask)


def confirm_new_key(
    options: argparse.Namespace,
) -> Callable[[str], Deferred[bool]] | None:
    """How a first-seen host key is decided: the flag trusts it, the
    interactive shell asks, ``-c`` and piped commands refuse it."""
    if options.accept_new_host_key:
        return lambda fingerprint: succeed(True)
    if options.command is None and sys.stdin.isatty():
        return confirm_by_asking
    return None


def load_key(path: str) -> keys.Key:
    """An OpenSSH (or PEM) private key, asking its passphrase if it has one."""
    try:
        try:
            key = keys.Key.fromFile(path)
        except keys.EncryptedKeyError:
            passphrase = _ask(f"Passphrase for {path}: ", "the key is encrypted")
            try:
                key = keys.Key.fromFile(path, passphrase=passphrase)
            except keys.BadKeyError:
                raise SetupError(f"wrong passphrase for {path}") from None
    except OSError as e:
        raise SetupError(f"cannot read the key {path}: {e.strerror}") from e
    except (keys.BadKeyError, ValueError) as e:
        raise SetupError(f"{path} is not an OpenSSH private key: {e}") from e
    if key.isPublic():
        raise SetupError(f"{path} is a public key; give the private key file")
    return key


def _ask(prompt: str, hint: str) -> str:
    """A secret typed without echo; nothing typed is an error (``hint`` says
    what to do instead)."""
    try:
        answer = getpass.getpass(prompt)
    except EOFError:
        answer = ""
    if not answer:
        raise SetupError(f"nothing typed at {prompt.strip()!r} ({hint})")
    return answer


def main(argv: list[str] | None = None) -> int:
    """Run one command or the shell; returns the exit status."""
    options = parse_args(argv)
    install_reactor()
    try:
        target = find_target(options)
        credentials = read_credentials(options)
    except SetupError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_NOT_RUN
    except (EOFError, KeyboardInterrupt):
        print(f"\n{PROG}: cancelled", file=sys.stderr)
        return EXIT_NOT_RUN
    known = KnownServers(options.known_hosts or default_admin_hosts_path())
    confirm = confirm_new_key(options)
    session: Session
    if options.command is not None:
        session = functools.partial(run_lines, lines=[options.command])
    elif sys.stdin.isatty():
        session = functools.partial(shell, prompt=PROMPT)
    else:
        session = functools.partial(run_lines, lines=sys.stdin.read().splitlines())
    return run(session, target, credentials, known, confirm)


def run(
    session: Session,
    target: Target,
    credentials: Credentials,
    known: KnownServers,
    confirm: Callable[[str], Deferred[bool]] | None = None,
) -> int:
    """Connect, run ``session``, log out; the reactor runs only in here."""
    from twisted.internet import reactor
    from twisted.internet.error import ReactorNotRunning

    from partypool.client.admin_connect import (
        LOST,
        AdminConnectError,
        HostKeyCheck,
        connect_admin,
    )

    check = HostKeyCheck(target.host, target.port, target.pin, known, _note, confirm)
    status: list[int] = []

    def logged_in(admin: AdminConnection) -> Deferred[None]:
        def log_out(result: object) -> Deferred[object]:
            return admin.close().addCallback(lambda _: result)

        running = asyncio.ensure_future(session(admin))
        # The server may go away while the shell waits for a line.
        admin.when_closed().addCallback(lambda _: running.cancel())

        def lost(failure: Failure) -> Failure:
            failure.trap(asyncio.CancelledError)
            raise AdminConnectError(LOST)

        work = Deferred.fromFuture(running).addErrback(lost)
        return work.addBoth(log_out).addCallback(status.append)

    def failed(failure: Failure) -> None:
        failure.trap(AdminConnectError)
        print(f"{PROG}: {failure.getErrorMessage()}", file=sys.stderr)

    def crashed(failure: Failure) -> None:
        print(f"{PROG}: internal error:", file=sys.stderr)
        failure.printTraceback(sys.stderr)

    def stop(_: object) -> None:
        with contextlib.suppress(ReactorNotRunning):
            reactor.stop()

    def start() -> None:
        d = connect_admin(reactor, check, credentials).addCallback(logged_in)
        d.addErrback(failed).addErrback(crashed).addBoth(stop)

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0] if status else EXIT_NOT_RUN


async def run_lines(admin: AdminConnection, lines: list[str]) -> int:
    """Run ``lines`` one after the other (``-c``, or commands piped in, as
    ``ssh -T`` reads them); the status is the last command's, as in ``sh``."""
    status = 0
    for line in map(str.strip, lines):
        if line in EXIT_WORDS:
            break
        if line:
            status = await _run(admin, line)
    return status


async def shell(admin: AdminConnection, prompt: str) -> int:
    """Read lines with local editing and history and run each on the server.

    Ctrl-C drops the typed line, as in a shell; ``exit``, ``logout`` and
    Ctrl-D end the session with status 0.  A lost connection ends it with
    L{AdminConnectError}.
    """
    session: PromptSession[str] = PromptSession()
    while True:
        try:
            line = (await session.prompt_async(prompt)).strip()
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        if line in EXIT_WORDS:
            return 0
        if line:
            await _run(admin, line)


async def _run(admin: AdminConnection, line: str) -> int:
    return await admin.run(line, sys.stdout).asFuture(asyncio.get_running_loop())


def _note(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

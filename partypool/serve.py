"""``partypool serve``: the server in the foreground, for a person at a terminal.

It is ``twistd --nodaemon --pidfile= partypool``: the same plugin and
options, run by twistd's own runner, without the pid file that makes a
second server started from the same folder fail ("Another twistd server is
running").  Options come from ``<data dir>/partypool.toml`` when it exists
(as ``--config``; the command line wins).  What it adds:

- a missing passkey is asked for (hidden, typed twice) when a person is at
  the terminal, with a generated strong one offered (Enter takes it) and the
  choice to keep it in the data directory (owner-only) so the next start
  does not ask; the same for the root password unless root logs in with
  keys.  With no terminal a missing passkey stays the plugin's one-line
  error;
- an option error is one line and a hint, not the whole option list;
- once the ports listen it writes this server's invite into the data
  directory and prints what people need (`Announcement`).
"""

from __future__ import annotations

import getpass
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import attrs
from twisted.internet.error import CannotListenError
from twisted.python import usage
from twisted.scripts import twistd

from partypool.config import config_path
from partypool.datadir import ServerRecord, store_secret
from partypool.identity import default_data_dir, public_host_guess, ssh_fingerprint
from partypool.invite import (
    INVITE_FILENAME,
    InviteError,
    invite_for_data_dir,
    qr_text,
    seal_invite,
    web_url,
)
from partypool.passkeys import generate_passkey, passkey_weakness
from partypool.tap import Options

PROG = "partypool"
#: The options file ``partypool serve`` reads from the data directory.
SETTINGS_NAME = "partypool.toml"

Ask = Callable[[str], str]
Say = Callable[[str], None]


def twistd_arguments(argv: list[str]) -> list[str]:
    """twistd's command line for ``partypool serve ARGV``: in the foreground,
    no pid file (the Windows runner has neither option nor file), and the
    settings file in the data directory unless --config names another."""
    settings = Path(config_path(argv, "--data-dir") or default_data_dir())
    settings /= SETTINGS_NAME
    if config_path(argv) is None and settings.is_file():
        argv = ["--config", str(settings), *argv]
    runner = ["--nodaemon"] if sys.platform == "win32" else ["--nodaemon", "--pidfile="]
    return [*runner, "partypool", *argv]


def main(argv: list[str] | None = None) -> int:
    """``partypool serve``: parse as twistd would, then run twistd's runner."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = ServeRunnerOptions()
    try:
        config.parseOptions(twistd_arguments(argv))
    except usage.UsageError as e:
        print(f"{PROG} serve: {e}", file=sys.stderr)
        print(ServeOptions.help_hint, file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print(f"\n{PROG} serve: cancelled", file=sys.stderr)
        return 1
    stderr = sys.stderr  # twistd sends it into its log once logging starts
    try:
        twistd.runApp(config)
    except CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or e.socketError
        print(
            f"{PROG} serve: cannot listen on {e.interface or '*'}:{e.port}: "
            f"{reason}. Is another server using it? Choose another with "
            "--chat tcp:PORT (or --admin).",
            file=stderr,
        )
        return 1
    return 0


class ServeRunnerOptions(twistd.ServerOptions):
    """twistd's own options, offering only Party Pool's plugin, with
    `ServeOptions` as its options."""

    @property
    def subCommands(self) -> Iterator[tuple[str, None, type, str]]:  # noqa: N802
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        found = [p for p in getPlugins(IServiceMaker) if p.tapname == "partypool"]
        if not found:
            raise usage.UsageError(
                "the partypool twistd plugin is not installed: pip install ."
            )
        self.loadedPlugins = {"partypool": found[0]}
        yield ("partypool", None, ServeOptions, found[0].description)


class ServeOptions(Options):
    """The plugin's options, asking a person for what is missing."""

    help_hint = f"`{PROG} serve --help` lists every option."

    def __init__(self, ask: Ask = input, secret: Ask = getpass.getpass) -> None:
        super().__init__()
        self.ask = ask
        self.secret = secret
        self.out = sys.stdout  # twistd redirects sys.stdout into its log later

    def getSynopsis(self) -> str:  # noqa: N802
        return f"Usage: {PROG} serve [options]"

    def interactive(self) -> bool:
        return sys.stdin.isatty() and sys.stdout.isatty()

    def missing_secret(self, name: str) -> str | None:
        """Ask for the passkey (and root password) in a terminal; without one,
        the plugin's one-line error (or no admin port)."""
        if not self.interactive():
            return super().missing_secret(name)
        data_dir = self["data-dir"]
        if name == "root-password" and (
            self["no-admin"] or (data_dir / "authorized_keys").is_file()
        ):
            return None
        chosen = ask_new_secret(name, self.ask, self.secret, self.say)
        if chosen and yes(
            self.ask(
                f"Keep the {name.replace('-', ' ')} in {data_dir} (readable by "
                "you only), "
                "so the next start does not ask? [Y/n] "
            ),
            default=True,
        ):
            self.say(f"  kept in {store_secret(data_dir, name, chosen)}")
        return chosen

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def postOptions(self) -> None:  # noqa: N802
        super().postOptions()
        self["announce"] = Announcement(
            options=self, passkey=self["passkey"], out=self.out
        )


def yes(answer: str, *, default: bool) -> bool:
    answer = answer.strip().lower()
    return default if not answer else answer in ("y", "yes")


def ask_new_secret(name: str, ask: Ask, secret: Ask, say: Say) -> str | None:
    """A new passkey or root password: Enter takes a generated strong one;
    a typed one is hidden, typed twice, and a weak one needs a yes.
    The root password may be left out ("none": no admin port)."""
    generated = generate_passkey()
    optional = name == "root-password"
    name = name.replace("-", " ")
    if optional:
        say("\nNo root password: root (the administrator) logs in with it.")
        prompt = 'Root password (Enter: the generated one; "none": no admin port): '
    else:
        say("\nNo passkey yet: everyone types it to join, and it opens the invite.")
        prompt = "Passkey (Enter: the generated one): "
    say(f"A strong {name}, generated for you: {generated}")
    while True:
        typed = secret(prompt)
        if not typed:
            say(f"Using the generated {name}; write it down: {generated}")
            return generated
        if optional and typed.strip().lower() == "none":
            say("No root password: the admin port stays closed.")
            return None
        weakness = passkey_weakness(typed)
        if weakness and not yes(
            ask(f"That {name} is weak: {weakness}. Use it anyway? [y/N] "),
            default=False,
        ):
            continue
        if secret(f"{name.capitalize()} again: ") == typed:
            return typed
        say("They do not match; again.")


@attrs.define
class Announcement:
    """Called once every port listens (`partypool.service.PublishAddress`):
    writes this server's invite into the data directory and prints what
    people need.  The passkey, kept only to seal the invite, is then dropped."""

    options: Options
    passkey: str | None
    out: TextIO

    def __call__(self, record: ServerRecord) -> None:
        lines = self.lines(record, self.write_invite(record))
        print("\n".join(lines), file=self.out, flush=True)

    def host(self, record: ServerRecord) -> str:
        return record.host or public_host_guess()

    def write_invite(self, record: ServerRecord) -> Path | None:
        data_dir, passkey = self.options["data-dir"], self.passkey
        self.passkey = None
        if not passkey:
            return None
        path = data_dir / INVITE_FILENAME
        try:
            invite = invite_for_data_dir(
                data_dir,
                self.host(record),
                chat_port=record.ports["chat"],
                admin_port=record.port("admin"),
                tls=record.tls,
                server_name=record.server_name,
            )
            path.write_bytes(seal_invite(invite, passkey))
        except (InviteError, OSError) as e:
            print(f"No invite written: {e}", file=self.out, flush=True)
            return None
        return path

    def lines(self, record: ServerRecord, invite: Path | None) -> list[str]:
        host, chat = self.host(record), record.ports["chat"]
        tls = self.options["tls"]
        plain = "" if tls else "  (no TLS)"
        out = [
            "",
            f"Party Pool is running as {record.server_name!r}. Ctrl-C stops it.",
            f"  Chat address:  {host_port(host, chat)}{plain}",
        ]
        if tls is not None:
            out.append(f"  Certificate:   SHA-256 {tls.fingerprint}")
        if "admin" in record.ports:
            key = ssh_fingerprint(self.options["host-key"])
            out.append(f"  Admin (SSH):   port {record.ports['admin']}, host key {key}")
        if "web" in record.ports:
            out += web_lines(host, record.ports["web"], tls is not None, self.out)
        if "irc" in record.ports:
            certificate = ", the same certificate" if tls else ""
            irc = f"  IRC gateway:   {host_port(host, record.ports['irc'])}"
            out.append(irc + (f"  (TLS{certificate})" if tls else plain))
        if invite is not None:
            out.append(f"  Invite:        {invite}")
        client = command("partypool-client")
        if invite is not None:
            join = f"{client} --invite {shlex.quote(str(invite))}"
        else:
            join = f"{client} --host {host} --port {chat}"
            join += f" --fingerprint {tls.fingerprint}" if tls else " --insecure-plain"
        package = f"{command(PROG)} package"
        if self.options["data-dir"] != default_data_dir():
            package += f" --data-dir {shlex.quote(str(self.options['data-dir']))}"
        out += [
            f"  Packages:      {package}   (for users; they reach this server)",
            f"  Join here:     {join}",
            "",
        ]
        return out


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets, as the clients read it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def command(name: str) -> str:
    """How to type the installed command ``name``: bare if the shell finds
    this installation's, else its path (a venv not activated).  The scripts
    sit beside the interpreter (``bin/`` or ``Scripts\\``), whether the server
    was started as ``partypool serve`` or ``python -m partypool serve``."""
    scripts = str(Path(sys.executable).absolute().parent)
    sibling = shutil.which(name, path=scripts)
    if sibling is None or shutil.which(name) == sibling:
        return name
    return sibling


def web_lines(host: str, port: int, tls: bool, out: TextIO) -> list[str]:
    """The web door's link, and its QR code when the terminal can draw it."""
    link = web_url(host, port, tls=tls)
    lines = [f"  Web page:      {link}"]
    encoding = getattr(out, "encoding", None) or "ascii"
    try:
        "█▀▄".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return lines
    return lines + ["    " + row for row in qr_text(link).splitlines()]


__all__ = ["Announcement", "ServeOptions", "main", "twistd_arguments"]

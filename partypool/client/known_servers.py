"""
Trust on first use for server certificates, kept like ssh's known_hosts.

The file holds one server a line, ``<host> <port> <fingerprint>
[iterations=<n>]``, where the fingerprint is the SHA-256 of the DER
certificate as colon-separated upper case hex, or ``-`` when no certificate
is remembered (a plain-TCP server, or one pinned by an invite), and
``iterations`` the highest PBKDF2 count the server asked for in a login that
succeeded (a later login asking for fewer is refused: see
L{partypool.client.protocol}); ``#`` starts a comment. A server seen for the
first time is added after it proved it knows the passkey over a channel-bound
login; a server whose certificate changed is refused, and the error says
which line to delete to accept the new one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs

ENV_VAR = "PARTYPOOL_KNOWN_SERVERS"


def normalize_fingerprint(fingerprint: str) -> str:
    """Upper-case hex without colons or spaces, for comparing."""
    return "".join(fingerprint.split()).replace(":", "").upper()


def same_fingerprint(a: str, b: str) -> bool:
    """Compare fingerprints ignoring case and colons."""
    return normalize_fingerprint(a) == normalize_fingerprint(b)


def default_path() -> Path:
    """Where the file lives: C{$PARTYPOOL_KNOWN_SERVERS}, else
    ``known_servers`` in L{config_dir}."""
    if override := os.environ.get(ENV_VAR):
        return Path(override)
    return config_dir() / "known_servers"


#: Written for "no fingerprint remembered".
NO_FINGERPRINT = "-"


@attrs.frozen
class Entry:
    """A remembered server: where its line is, so a user can delete it."""

    fingerprint: str | None
    line_number: int
    iterations: int | None = None


class FingerprintChanged(Exception):
    """The server shows a certificate other than the one we were told to
    expect: someone may be intercepting the connection."""

    def __init__(
        self, host: str, port: int, expected: str, actual: str, how_to_reset: str
    ):
        super().__init__(host, port, expected, actual)
        self.host = host
        self.port = port
        self.expected = expected
        self.actual = actual
        self.how_to_reset = how_to_reset

    def __str__(self) -> str:
        return (
            "@@@ WARNING: THE SERVER'S CERTIFICATE HAS CHANGED! @@@\n"
            f"The server at {self.host} port {self.port} shows a certificate with\n"
            f"  SHA-256 fingerprint {self.actual}\n"
            f"but we expected\n"
            f"  SHA-256 fingerprint {self.expected}\n"
            "Someone could be intercepting this connection, or the server got a\n"
            "new certificate. Nothing was sent; the connection was refused.\n"
            f"{self.how_to_reset}"
        )


@attrs.define
class KnownServers:
    """The known-servers file at C{path} (it need not exist yet)."""

    path: Path

    def lookup(self, host: str, port: int) -> Entry | None:
        """The remembered fingerprint of C{host}:C{port}, if any."""
        for number, line in enumerate(self._lines(), start=1):
            match line.split("#", 1)[0].split():
                case [known_host, known_port, fingerprint, *extra] if (
                    known_host.lower() == host.lower() and known_port == str(port)
                ):
                    return Entry(
                        None if fingerprint == NO_FINGERPRINT else fingerprint,
                        number,
                        _iterations(extra),
                    )
        return None

    def remember(
        self,
        host: str,
        port: int,
        fingerprint: str | None,
        iterations: int | None = None,
    ) -> None:
        """Write the line of C{host}:C{port}, in place of the one it had."""
        line = f"{host.lower()} {port} {fingerprint or NO_FINGERPRINT}"
        if iterations is not None:
            line += f" iterations={iterations}"
        lines = self._lines()
        entry = self.lookup(host, port)
        if entry is None:
            lines.append(line)
        else:
            lines[entry.line_number - 1] = line
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.path.with_name(self.path.name + ".new")
        partial.write_text("".join(f"{text}\n" for text in lines), encoding="utf-8")
        os.replace(partial, self.path)

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def how_to_reset(self, entry: Entry) -> str:
        """What to tell a user who trusts the new certificate."""
        return (
            "If the administrator confirms the new certificate, delete line "
            f"{entry.line_number} of\n  {self.path}\nand connect again."
        )


def _iterations(fields: list[str]) -> int | None:
    for field in fields:
        key, _, value = field.partition("=")
        if key == "iterations" and value.isascii() and value.isdigit():
            return int(value)
    return None


ADMIN_ENV_VAR = "PARTYPOOL_KNOWN_ADMIN_HOSTS"


def config_dir() -> Path:
    """The per-user configuration directory of Party Pool's client tools
    (``%APPDATA%\\partypool`` on Windows, ``$XDG_CONFIG_HOME/partypool`` or
    ``~/.config/partypool`` elsewhere)."""
    if sys.platform == "win32" and (appdata := os.environ.get("APPDATA")):
        base = Path(appdata)
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "partypool"


def default_admin_hosts_path() -> Path:
    """Where ``partypool-root`` remembers admin-port SSH host keys:
    C{$PARTYPOOL_KNOWN_ADMIN_HOSTS}, else ``known_admin_hosts`` in
    L{config_dir}. A file of its own, in the same format as the
    known-servers file, because it holds SSH host keys (``SHA256:…``), not
    TLS certificates."""
    if override := os.environ.get(ADMIN_ENV_VAR):
        return Path(override)
    return config_dir() / "known_admin_hosts"

"""Invites: what a client needs to find and trust a server, sealed with the passkey.

An invite names the server (host, ports, name), pins its keys (the TLS
certificate fingerprint and the SSH host key fingerprint) and is encrypted with
a key derived from the chat passkey. Whoever holds the passkey can open it;
nobody else learns where the server is, and a changed byte is detected.

File format, version 1 (documented in docs/distribution.md) — one UTF-8 JSON
object::

    {"partypool-invite": 1, "kdf": "pbkdf2-sha256", "iterations": 390000,
     "salt": "<base64, 16 random bytes>", "token": "<Fernet token>"}

The Fernet key is ``urlsafe_b64encode(PBKDF2-HMAC-SHA256(passkey, salt,
iterations, 32 bytes))``; the token encrypts and authenticates the UTF-8 JSON
body, the fields of :class:`Invite`. All cryptography comes from the
``cryptography`` package; nothing is hand-rolled.

This module is imported by the (possibly frozen) client before it installs its
reactor, so nothing it imports at module level may import
``twisted.internet.reactor``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import configparser
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import attrs
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from twisted.conch.ssh.keys import BadKeyError

from partypool.identity import default_data_dir, host_key_fingerprint
from partypool.room.auth import DEFAULT_ITERATIONS
from partypool.wire import PROTOCOL_VERSION

__all__ = [
    "DEFAULT_ITERATIONS",
    "FORMAT_VERSION",
    "INVITE_FILENAME",
    "PROTOCOL",
    "Invite",
    "InviteError",
    "add_server_arguments",
    "describe",
    "embedded_invite",
    "invite_for_data_dir",
    "invite_from_arguments",
    "main",
    "open_invite",
    "package_version",
    "qr_text",
    "read_passkey",
    "web_url",
    "seal_invite",
    "tls_certificate_fingerprint",
]

#: The envelope version this module writes; the only one it reads.
FORMAT_VERSION = 1
#: A hostile invite must not make the client spin for minutes.
MAX_ITERATIONS = 10_000_000
#: The chat protocol version an invite names (the wire's).
PROTOCOL = PROTOCOL_VERSION
#: The name of the invite file inside a frozen build and inside a ZIP package.
INVITE_FILENAME = "partypool-invite.json"

#: The ports an invite names when neither a flag nor the server's record does.
DEFAULT_CHAT_PORT = 12345
DEFAULT_ADMIN_PORT = 12346
DEFAULT_WEB_PORT = 12347

_DAMAGED = "wrong passkey or damaged invite"
_SALT_BYTES = 16


class InviteError(Exception):
    """An invite could not be opened or made; ``str()`` is a message for users."""


@attrs.frozen
class Invite:
    """Where a server is and how to recognise it (the sealed body of an invite)."""

    host: str
    chat_port: int
    admin_port: int | None
    tls: bool
    tls_fingerprint: str | None
    ssh_fingerprint: str | None
    server_name: str
    protocol: str = PROTOCOL
    version: str = attrs.field(factory=lambda: package_version())


def package_version() -> str:
    """The Party Pool version, from one place: setup.cfg's ``version``.

    Installed: the distribution metadata setuptools wrote from setup.cfg (a
    frozen build carries a copy, written by dist_tools). A source checkout
    that is not installed: setup.cfg itself.
    """
    import importlib.metadata

    try:
        return importlib.metadata.version("partypool")
    except importlib.metadata.PackageNotFoundError:
        pass
    setup_cfg = Path(__file__).resolve().parent.parent / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(setup_cfg, encoding="utf-8")
        if parser.has_option("metadata", "version"):
            return parser.get("metadata", "version").strip()
    return "0+unknown"


def _derive_key(passkey: str, salt: bytes, iterations: int) -> bytes:
    """The Fernet key for ``passkey`` (PBKDF2-HMAC-SHA256, 32 bytes)."""
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations
    )
    return base64.urlsafe_b64encode(kdf.derive(passkey.encode("utf-8")))


def seal_invite(
    invite: Invite, passkey: str, *, iterations: int = DEFAULT_ITERATIONS
) -> bytes:
    """Encrypt ``invite`` with ``passkey``: the bytes of a version-1 invite file."""
    if not passkey:
        raise InviteError("the passkey must not be empty")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise InviteError(f"iterations must be between 1 and {MAX_ITERATIONS}")
    salt = os.urandom(_SALT_BYTES)
    body = json.dumps(attrs.asdict(invite), sort_keys=True).encode("utf-8")
    token = Fernet(_derive_key(passkey, salt, iterations)).encrypt(body)
    envelope = {
        "partypool-invite": FORMAT_VERSION,
        "kdf": "pbkdf2-sha256",
        "iterations": iterations,
        "salt": base64.b64encode(salt).decode("ascii"),
        "token": token.decode("ascii"),
    }
    return (json.dumps(envelope, indent=1) + "\n").encode("utf-8")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _parse_body(body: bytes) -> Invite:
    """Validate the decrypted body field by field: a bad type is damage."""
    try:
        fields = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InviteError(_DAMAGED) from e
    if not isinstance(fields, dict):
        raise InviteError(_DAMAGED)
    ok = (
        isinstance(fields.get("host"), str)
        and _is_int(fields.get("chat_port"))
        and (fields.get("admin_port") is None or _is_int(fields.get("admin_port")))
        and isinstance(fields.get("tls"), bool)
        and _optional(fields.get("tls_fingerprint"), str)
        and _optional(fields.get("ssh_fingerprint"), str)
        and isinstance(fields.get("server_name"), str)
        and isinstance(fields.get("protocol"), str)
        and isinstance(fields.get("version"), str)
    )
    if not ok:
        raise InviteError(_DAMAGED)
    # Unknown fields are ignored so a later minor addition stays readable.
    names = [a.name for a in attrs.fields(Invite)]
    return Invite(**{name: fields[name] for name in names})


def open_invite(data: bytes, passkey: str) -> Invite:
    """Decrypt and check an invite file; every failure is an :class:`InviteError`.

    The two messages users can see: ``wrong passkey or damaged invite`` (the
    two cannot be told apart, by design of authenticated encryption) and
    ``unsupported invite version N`` (made by a newer Party Pool).
    """
    try:
        envelope = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, TypeError) as e:
        raise InviteError(_DAMAGED) from e
    if not isinstance(envelope, dict) or "partypool-invite" not in envelope:
        raise InviteError(_DAMAGED)
    version = envelope["partypool-invite"]
    if version != FORMAT_VERSION:
        raise InviteError(f"unsupported invite version {version}")
    iterations = envelope.get("iterations")
    salt_text = envelope.get("salt")
    token = envelope.get("token")
    if (
        envelope.get("kdf") != "pbkdf2-sha256"
        or not _is_int(iterations)
        or not 1 <= iterations <= MAX_ITERATIONS
        or not isinstance(salt_text, str)
        or not isinstance(token, str)
    ):
        raise InviteError(_DAMAGED)
    try:
        salt = base64.b64decode(salt_text, validate=True)
        body = Fernet(_derive_key(passkey, salt, iterations)).decrypt(
            token.encode("ascii")
        )
    except (binascii.Error, ValueError, InvalidToken) as e:
        raise InviteError(_DAMAGED) from e
    return _parse_body(body)


def embedded_invite() -> bytes | None:
    """The invite bundled into a frozen (PyInstaller) build, else ``None``.

    PyInstaller one-file builds unpack their data files to ``sys._MEIPASS``;
    dist_tools puts the invite there as :data:`INVITE_FILENAME`.
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not bundle:
        return None
    path = Path(bundle) / INVITE_FILENAME
    try:
        return path.read_bytes()
    except OSError:
        return None


# --- reading a server's data directory ---------------------------------------


def tls_certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate, upper-case hex pairs joined by colons.

    The server's own ``partypool.tls.certificate_fingerprint``, so the invite
    and the server can never disagree on the format.
    """
    from partypool.tls import certificate_fingerprint

    return certificate_fingerprint(cert_pem)


def invite_for_data_dir(
    data_dir: Path,
    host: str,
    *,
    chat_port: int = DEFAULT_CHAT_PORT,
    admin_port: int | None = DEFAULT_ADMIN_PORT,
    tls: bool = True,
    server_name: str | None = None,
) -> Invite:
    """Build the invite for the server whose state lives in ``data_dir``.

    The TLS certificate must exist when ``tls`` is on (start the server once to
    create it); the SSH host key is optional (no admin port pinned without it).
    """
    tls_fingerprint = None
    if tls:
        cert = data_dir / "tls" / "cert.pem"
        try:
            tls_fingerprint = tls_certificate_fingerprint(cert.read_bytes())
        except OSError as e:
            raise InviteError(
                f"cannot read the TLS certificate {cert} ({e.strerror}); is "
                f"{data_dir} the server's data directory? If not, pass the one it "
                "uses with --data-dir; if it is, start the server once to create "
                "the certificate (--no-tls only if the server runs without TLS)"
            ) from e
        except ValueError as e:
            raise InviteError(f"{cert} is not a PEM certificate: {e}") from e
    ssh_fingerprint = None
    host_key = data_dir / "ssh" / "host_key"
    if host_key.is_file():
        try:
            ssh_fingerprint = host_key_fingerprint(host_key)
        except (OSError, ValueError, TypeError, BadKeyError) as e:
            raise InviteError(f"cannot read the SSH host key {host_key}: {e}") from e
    return Invite(
        host=host,
        chat_port=chat_port,
        admin_port=admin_port,
        tls=tls,
        tls_fingerprint=tls_fingerprint,
        ssh_fingerprint=ssh_fingerprint,
        server_name=server_name or host,
    )


def invite_from_arguments(args: argparse.Namespace) -> Invite:
    """The invite for the server that `add_server_arguments` describe.

    What the flags leave open comes from what the server recorded in its data
    directory when it last started (`partypool.datadir.ServerRecord`): its
    ports, whether TLS is on, its name, and its address if it listens on one
    only.  So an invite reaches a server on a non-default port without being
    told; a flag still wins.  With no record: ports 12345 and 12346, TLS.
    """
    from partypool.datadir import read_server_record

    data_dir = args.data_dir or default_data_dir()
    record = read_server_record(data_dir)
    host = (args.host or "").strip() or (record.host if record else None)
    if not host:
        raise InviteError(
            "--host is required (the name or address clients use to reach the server)"
        )
    if record is None:
        chat_port = args.port or DEFAULT_CHAT_PORT
        admin_port = args.admin_port or DEFAULT_ADMIN_PORT
    else:
        chat_port = args.port or record.port("chat") or DEFAULT_CHAT_PORT
        admin_port = args.admin_port or record.port("admin")  # None: no admin port
    return invite_for_data_dir(
        data_dir,
        host,
        chat_port=chat_port,
        admin_port=admin_port,
        tls=not args.no_tls and (record is None or record.tls),
        server_name=args.server_name or (record.server_name if record else None),
    )


def describe(invite: Invite) -> str:
    """One line for the operator: where an invite sends people."""
    admin = f", admin port {invite.admin_port}" if invite.admin_port else ""
    plain = "" if invite.tls else ", no TLS"
    return f"{invite.server_name} at {invite.host}:{invite.chat_port}{admin}{plain}"


def read_passkey(
    passkey_file: str | None, *, confirm: bool = True, data_dir: Path | None = None
) -> str:
    """The chat passkey: ``--passkey-file``, else ``$PARTYPOOL_PASSKEY``, else
    the one the operator kept in the server's ``data_dir`` (``partypool
    serve`` offers that), else a prompt.

    Never a command-line argument: those show in ``ps`` and shell history.
    A weak passkey is warned about on stderr (the invite it seals can be
    used to guess it offline), but used: it is the one the server runs with.
    """
    from partypool.datadir import read_stored_secret
    from partypool.tls import ConfigError

    try:
        stored = read_stored_secret(data_dir, "passkey") if data_dir else None
    except ConfigError as e:
        raise InviteError(str(e)) from e
    if passkey_file:
        try:
            text = Path(passkey_file).read_text(encoding="utf-8")
        except OSError as e:
            raise InviteError(f"cannot read {passkey_file}: {e.strerror}") from e
        passkey = text.rstrip("\r\n")
    elif os.environ.get("PARTYPOOL_PASSKEY"):
        passkey = os.environ["PARTYPOOL_PASSKEY"]
    elif stored:
        passkey = stored
    else:
        if not sys.stdin.isatty():
            raise InviteError(
                "no passkey: use --passkey-file or PARTYPOOL_PASSKEY, or run in a "
                "terminal"
            )
        passkey = getpass.getpass("Server passkey: ")
        if confirm and getpass.getpass("Passkey again: ") != passkey:
            raise InviteError("the passkeys do not match")
    if not passkey:
        raise InviteError("the passkey must not be empty")
    from partypool.passkeys import weak_passkey_warning

    if warning := weak_passkey_warning(passkey):
        print(f"warning: {warning}", file=sys.stderr)
    return passkey


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``partypool-invite`` and ``partypool-dist``."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the server's data directory (default: $STATE_DIRECTORY, else "
        "$XDG_DATA_HOME/partypool)",
    )
    recorded = "as the server recorded in --data-dir when it last started"
    parser.add_argument(
        "--host",
        help="the public host name or address of the server (default: the "
        "address it listens on, if only one)",
    )
    parser.add_argument(
        "--port", type=_port, help=f"chat port (default: {recorded}, else 12345)"
    )
    parser.add_argument(
        "--admin-port",
        type=_port,
        help=f"admin (SSH) port (default: {recorded}, else 12346)",
    )
    parser.add_argument(
        "--no-tls", action="store_true", help="the server serves plain TCP"
    )
    parser.add_argument(
        "--server-name", help=f"name shown to users (default: {recorded})"
    )
    parser.add_argument(
        "--passkey-file",
        help="file holding the chat passkey (default: $PARTYPOOL_PASSKEY, the "
        "passkey kept in --data-dir, or a prompt)",
    )


def web_url(host: str, port: int, *, tls: bool = True) -> str:
    """The address of the web door's page (HTTPS unless the server runs --no-tls)."""
    scheme, default = ("https", 443) if tls else ("http", 80)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"{scheme}://{host}/" if port == default else f"{scheme}://{host}:{port}/"


def web_url_from_arguments(args: argparse.Namespace) -> str:
    """The web door's page for the server `add_server_arguments` describe:
    host, port and TLS from the flags, else from the server's record (as
    `invite_from_arguments` does), else the defaults."""
    from partypool.datadir import read_server_record

    record = read_server_record(args.data_dir or default_data_dir())
    host = (args.host or "").strip() or (record.host if record else None)
    if not host:
        raise InviteError(
            "--host is required (the name or address phones use to reach the server)"
        )
    port = args.web_port or (record and record.port("web")) or DEFAULT_WEB_PORT
    tls = not args.no_tls and (record is None or record.tls)
    return web_url(host, port, tls=tls)


def qr_text(url: str) -> str:
    """``url`` as a QR code of text blocks, light on dark (most terminals)."""
    import io

    import qrcode  # only the operator's --qr needs it, never the frozen client

    code = qrcode.QRCode(border=2)
    code.add_data(url)
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """``partypool-invite``: write the sealed invite for a server."""
    parser = argparse.ArgumentParser(
        prog="partypool-invite",
        description="Make the encrypted invite file clients use to find and "
        "trust this server.",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--output", "-o", help="write the invite here (default: standard output)"
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="print the address of the web page people join with, not an invite",
    )
    parser.add_argument(
        "--web-port",
        type=_port,
        default=None,
        help=f"web door port (default: the recorded one, else {DEFAULT_WEB_PORT})",
    )
    parser.add_argument(
        "--qr",
        action="store_true",
        help="with --web: draw the address as a QR code too (for a dark terminal)",
    )
    args = parser.parse_args(argv)
    if args.web or args.qr:
        try:
            url = web_url_from_arguments(args)
        except InviteError as e:
            print(f"partypool-invite: {e}", file=sys.stderr)
            return 1
        print(url)
        if args.qr:
            sys.stdout.write(qr_text(url))
        return 0
    try:
        invite = invite_from_arguments(args)
        passkey = read_passkey(
            args.passkey_file, data_dir=args.data_dir or default_data_dir()
        )
        sealed = seal_invite(invite, passkey)
    except InviteError as e:
        print(f"partypool-invite: {e}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_bytes(sealed)
        print(
            f"invite for {describe(invite)} written to {args.output}", file=sys.stderr
        )
    else:
        sys.stdout.write(sealed.decode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

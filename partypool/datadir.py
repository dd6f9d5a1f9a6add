"""The data directory: who may own it, the secrets kept in it, and where the
running server says it can be reached.

A server keeps its TLS key, SSH host key, ``authorized_keys``, database and,
if the operator asks, its passkey and root password in one directory
(`partypool.identity.default_data_dir`).  Whoever can write there can plant
an ``authorized_keys`` line and become root, so at start-up:

- the directory must belong to the user running the server and be closed to
  everyone else (mode 0700);
- it must not be a symbolic link (the one exception: a link owned by root,
  which is how systemd's ``StateDirectory=`` with ``DynamicUser=`` presents
  ``/var/lib/partypool``; only root could have made it), and no link on the
  way to it may belong to another user;
- every key and secret file in it must belong to that user, must not be a
  link, and a secret must not be readable by group or others: such a file is
  refused, with the command that fixes it.

On Windows POSIX modes and owners mean nothing (``os.stat`` reports every
folder as 0777 and every owner as 0): only links and junctions are checked
there, and the default directory is in ``%LOCALAPPDATA%``, which Windows
gives to its user alone.

The running server also writes ``server.json`` here once its ports listen:
its ports, name and whether TLS is on, so ``partypool-invite`` and
``partypool-dist`` make invites and packages that reach it without being told
its ports again (their flags still win).

Nothing here imports a reactor: the invite and packaging tools use it too.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from pathlib import Path

import attrs

from partypool.tls import ConfigError, write_private

#: Files the server itself may keep secrets in, by option name.
STORED_SECRETS = {"passkey": "passkey", "root-password": "root-password"}
#: Where the running server records how it can be reached.
RECORD_NAME = "server.json"

# Entries of the data directory that hold something secret or trusted:
# (relative path, is a directory, must be private).
_ENTRIES = (
    ("tls", True, True),
    ("tls/key.pem", False, True),
    ("tls/cert.pem", False, False),
    ("ssh", True, True),
    ("ssh/host_key", False, True),
    ("authorized_keys", False, False),
    ("passkey", False, True),
    ("root-password", False, True),
    ("partypool.sqlite3", False, False),
    (RECORD_NAME, False, False),
)


def posix_modes() -> bool:
    """Whether file modes and owners mean anything here (not on Windows)."""
    return sys.platform != "win32"


def _is_link(st: os.stat_result) -> bool:
    """A symbolic link, or on Windows any reparse point (a junction too)."""
    reparse = getattr(st, "st_file_attributes", 0) & stat.FILE_ATTRIBUTE_REPARSE_POINT
    return stat.S_ISLNK(st.st_mode) or bool(reparse)


def _uid() -> int:
    return os.geteuid()


def _check_links_on_the_way(path: Path) -> None:
    """A link above the data directory must be root's or ours: one that
    another user made could send us into a directory they prepared."""
    if not posix_modes():
        return
    for parent in reversed(path.absolute().parents):
        try:
            st = parent.lstat()
        except OSError:
            continue  # does not exist yet: mkdir will make it ours
        if _is_link(st) and st.st_uid not in (0, _uid()):
            raise ConfigError(
                f"{parent} is a symbolic link owned by another user (uid "
                f"{st.st_uid}), on the way to the data directory {path}; give "
                "--data-dir a path without it"
            )


def prepare_data_dir(path: Path) -> Path:
    """Create the data directory owner-only, or refuse one others could have
    prepared; then check the key and secret files already in it.

    Raises `ConfigError` whose message says what to do.
    """
    _check_links_on_the_way(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as e:
        raise ConfigError(f"cannot use the data directory {path}: {e}") from None
    if _is_link(st):
        if not posix_modes() or st.st_uid != 0:
            raise ConfigError(
                f"the data directory {path} is a symbolic link; give --data-dir "
                f"the real directory ({path.resolve()}) if it is yours"
            )
        st = path.stat()  # systemd's StateDirectory= link, made by root
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"the data directory {path} is not a directory")
    if posix_modes():
        _check_owner(path, st)
        if st.st_mode & 0o077:
            raise ConfigError(
                f"data directory {path} is open to other users; fix it with: "
                f"chmod 700 {path}"
            )
    for name, directory, private in _ENTRIES:
        check_entry(path / name, directory=directory, private=private)
    return path


def _check_owner(path: Path, st: os.stat_result) -> None:
    if st.st_uid != _uid():
        raise ConfigError(
            f"{path} belongs to another user (uid {st.st_uid}), not to the user "
            f"running the server (uid {_uid()}); whoever made it could have "
            f"put keys in it. Check its contents, then: chown -R {_uid()} {path}"
        )


def check_entry(path: Path, *, directory: bool = False, private: bool = True) -> None:
    """Refuse a data-directory entry that is a link, another user's, or (if
    ``private``) open to others.  A missing entry is fine: the server makes it."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"cannot check {path}: {e}") from None
    if _is_link(st):
        raise ConfigError(
            f"{path} is a symbolic link; the data directory keeps its own files. "
            "Replace it with the file itself"
        )
    kind = stat.S_ISDIR(st.st_mode)
    if kind != directory:
        noun = "a directory" if directory else "a regular file"
        raise ConfigError(f"{path} should be {noun}")
    if not posix_modes():
        return
    _check_owner(path, st)
    if private and st.st_mode & 0o077:
        mode = "700" if directory else "600"
        raise ConfigError(
            f"{path} is open to other users (mode {stat.filemode(st.st_mode)}); "
            f"fix it with: chmod {mode} {path}"
        )


# --- secrets the operator chose to keep here ------------------------------------


def read_stored_secret(data_dir: Path, name: str) -> str | None:
    """The secret kept as ``<data dir>/<name>`` (checked by `prepare_data_dir`)."""
    path = data_dir / STORED_SECRETS[name]
    check_entry(path)
    try:
        text = path.read_text("utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    return text or None


def store_secret(data_dir: Path, name: str, secret: str) -> Path:
    """Keep ``secret`` as ``<data dir>/<name>``, owner-only from its first byte."""
    path = data_dir / STORED_SECRETS[name]
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=data_dir)
    os.close(fd)
    os.unlink(staging)
    write_private(Path(staging), (secret + "\n").encode("utf-8"))
    os.replace(staging, path)
    return path


# --- how the running server can be reached --------------------------------------


@attrs.frozen
class ServerRecord:
    """What the running server wrote about itself: its listening ports by
    door (``chat``, ``admin``, and any other door's), its name, whether the
    chat port runs TLS, and the host it listens on if only one."""

    ports: dict[str, int]
    server_name: str
    tls: bool
    host: str | None = None

    def port(self, door: str) -> int | None:
        return self.ports.get(door)


def write_server_record(data_dir: Path, record: ServerRecord) -> Path:
    """Replace ``server.json`` in one step (readers never see half of it)."""
    path = data_dir / RECORD_NAME
    text = json.dumps(attrs.asdict(record), indent=1, sort_keys=True) + "\n"
    fd, staging = tempfile.mkstemp(prefix=f".{RECORD_NAME}.", dir=data_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(staging, 0o644)
    os.replace(staging, path)
    return path


def read_server_record(data_dir: Path) -> ServerRecord | None:
    """The record of the last server started with ``data_dir``, if any and
    readable; a damaged record counts as none (the tools then use defaults)."""
    try:
        fields = json.loads((data_dir / RECORD_NAME).read_text("utf-8"))
        ports = {str(k): int(v) for k, v in dict(fields["ports"]).items()}
        return ServerRecord(
            ports=ports,
            server_name=str(fields["server_name"]),
            tls=bool(fields["tls"]),
            host=fields.get("host") if isinstance(fields.get("host"), str) else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None

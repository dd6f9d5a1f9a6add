"""The data directory's owner, links and modes (issue 12 item 14), its stored
secrets, the server's address record, and what Windows can check.

Files owned by another user are made with ``chown``, so those tests need
root (the project's CI runs as root); the others pretend to be another uid.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.python import usage

from partypool import datadir, identity, tap, tls
from partypool.datadir import ServerRecord, prepare_data_dir
from partypool.tls import ConfigError

NOBODY = 65534
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root"
)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)
    return path


def private_file(path: Path, text: str = "secret\n", mode: int = 0o600) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def parse(data_dir: Path, *args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(
        ["--data-dir", str(data_dir), "--kdf-iterations", "4096", "--no-admin", *args]
    )
    return options


def test_new_directory_is_made_owner_only(tmp_path: Path) -> None:
    path = prepare_data_dir(tmp_path / "a" / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


@as_root
def test_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    """Mode 0700 is not enough: whoever owns it could have planted keys."""
    data = private_dir(tmp_path / "data")
    os.chown(data, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=r"belongs to another user \(uid 65534\)"):
        prepare_data_dir(data)


def test_symlinked_directory_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A link to a directory, even ours and 0700, is refused unless root made
    it; the message names the real directory to use instead."""
    me = os.stat(tmp_path).st_uid + 4242
    monkeypatch.setattr(datadir, "_uid", lambda: me)
    real = private_dir(tmp_path / "real")
    link = tmp_path / "data"
    link.symlink_to(real)
    for path in (real, link):
        os.lchown(path, me, me)
    with pytest.raises(ConfigError, match=f"symbolic link.*{real}"):
        prepare_data_dir(link)


@as_root
def test_symlink_made_by_root_is_followed(tmp_path: Path) -> None:
    """systemd's StateDirectory= with DynamicUser= is a root-owned link to
    /var/lib/private/…: it must keep working."""
    real = private_dir(tmp_path / "private" / "partypool")
    link = tmp_path / "partypool"
    link.symlink_to(real)
    assert link.lstat().st_uid == 0
    assert prepare_data_dir(link) == link


@as_root
def test_link_of_another_user_on_the_way_is_refused(tmp_path: Path) -> None:
    elsewhere = private_dir(tmp_path / "elsewhere")
    link = tmp_path / "via"
    link.symlink_to(elsewhere)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="symbolic link owned by another user"):
        prepare_data_dir(link / "data")


def test_open_directory_is_refused(tmp_path: Path) -> None:
    data = private_dir(tmp_path / "data")
    data.chmod(0o750)
    with pytest.raises(ConfigError, match=f"chmod 700 {data}"):
        prepare_data_dir(data)


@pytest.mark.parametrize(
    "name, mode", [("tls/key.pem", 0o640), ("ssh/host_key", 0o604), ("passkey", 0o644)]
)
def test_secret_file_readable_by_others_is_refused(
    tmp_path: Path, name: str, mode: int
) -> None:
    data = private_dir(tmp_path / "data")
    private_file(data / name, mode=mode)
    with pytest.raises(ConfigError, match=f"chmod 600 {data / name}"):
        prepare_data_dir(data)


@pytest.mark.parametrize("name", ["authorized_keys", "ssh/host_key", "passkey"])
def test_symlinked_file_is_refused(tmp_path: Path, name: str) -> None:
    """A link inside the data directory could point at anyone's file."""
    data = private_dir(tmp_path / "data")
    target = private_file(tmp_path / "elsewhere" / "file")
    (data / name).parent.mkdir(mode=0o700, exist_ok=True)
    (data / name).symlink_to(target)
    with pytest.raises(ConfigError, match=f"{data / name} is a symbolic link"):
        prepare_data_dir(data)


@as_root
def test_authorized_keys_of_another_user_is_refused(tmp_path: Path) -> None:
    data = private_dir(tmp_path / "data")
    keys = private_file(data / "authorized_keys", "ssh-ed25519 AAAA planted\n")
    os.chown(keys, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="authorized_keys belongs to another user"):
        prepare_data_dir(data)


def test_passkey_file_readable_by_others_is_refused_not_warned(
    tmp_path: Path,
) -> None:
    """--passkey-file and --root-password-file: refused with the fix."""
    data = tmp_path / "data"
    passkey = private_file(tmp_path / "passkey", mode=0o644)
    with pytest.raises(usage.UsageError, match=f"chmod 600 {passkey}"):
        parse(data, "--passkey-file", str(passkey))
    passkey.chmod(0o600)
    root = private_file(tmp_path / "root", mode=0o640)
    with pytest.raises(usage.UsageError, match=f"chmod 600 {root}"):
        parse(data, "--passkey-file", str(passkey), "--root-password-file", str(root))


def test_stored_secrets_are_used_last(tmp_path: Path, monkeypatch) -> None:
    """A passkey kept in the data directory starts the server; a file or the
    environment still wins over it."""
    monkeypatch.delenv("PARTYPOOL_PASSKEY", raising=False)
    data = private_dir(tmp_path / "data")
    stored = datadir.store_secret(data, "passkey", "kept passkey")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    datadir.store_secret(data, "root-password", "kept root password")
    options = parse(data)
    assert options["passkey"] == "kept passkey"
    assert options["root-password"] == "kept root password"
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "from the environment")
    assert parse(data)["passkey"] == "from the environment"
    datadir.store_secret(data, "passkey", "replaced")
    assert datadir.read_stored_secret(data, "passkey") == "replaced"


def test_windows_checks_links_but_not_modes(tmp_path: Path, monkeypatch) -> None:
    """On Windows every folder reports 0777 and every file 0666: those must
    not stop the server, but a link still does."""
    data = private_dir(tmp_path / "data")
    data.chmod(0o777)
    private_file(data / "tls" / "key.pem", mode=0o666)
    given = private_file(tmp_path / "passkey", mode=0o666)
    monkeypatch.setattr(sys, "platform", "win32")
    assert prepare_data_dir(data) == data
    tls.check_private(given)  # no error
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(ConfigError, match="symbolic link"):
        prepare_data_dir(link)


def test_windows_junction_counts_as_a_link() -> None:
    """A junction is a reparse point, not S_ISLNK: still refused."""
    junction = SimpleNamespace(
        st_mode=stat.S_IFDIR | 0o777,
        st_file_attributes=stat.FILE_ATTRIBUTE_REPARSE_POINT,
    )
    assert datadir._is_link(junction)
    assert not datadir._is_link(SimpleNamespace(st_mode=stat.S_IFDIR | 0o777))


def test_windows_default_data_dir_is_local_app_data(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "AppData" / "Local"))
    monkeypatch.setattr(sys, "platform", "win32")
    assert identity.default_data_dir() == tmp_path / "AppData" / "Local" / "partypool"


def test_server_record_round_trip(tmp_path: Path) -> None:
    record = ServerRecord(
        ports={"chat": 24345, "admin": 24346}, server_name="party", tls=True
    )
    datadir.write_server_record(tmp_path, record)
    assert datadir.read_server_record(tmp_path) == record
    assert datadir.read_server_record(tmp_path / "none") is None
    (tmp_path / datadir.RECORD_NAME).write_text('{"ports": 3}')
    assert datadir.read_server_record(tmp_path) is None

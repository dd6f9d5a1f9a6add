"""How ``twistd partypool`` wires the admin port (service tree only, not started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage

from partypool import tap
from partypool.admin.ssh import AdminFactory
from partypool.service import Listener, StoreService
from tests.test_admin_ssh import new_key


def build(tmp_path: Path, *args: str) -> tuple[list[Listener], list[str]]:
    """Parse, build the tree, and return its listeners and what was logged."""
    options = tap.Options()
    options.parseOptions(
        ["--data-dir", str(tmp_path / "data"), "--kdf-iterations", "4096", *args]
    )
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        service = tap.makeService(options)
    finally:
        globalLogPublisher.removeObserver(events.append)
    [store] = [c for c in service if isinstance(c, StoreService)]
    store.store.close()
    listeners = [c for c in service if isinstance(c, Listener)]
    return listeners, [formatEvent(e) for e in events]


@pytest.fixture(autouse=True)
def passkey(monkeypatch):
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    monkeypatch.delenv("PARTYPOOL_ROOT_PASSWORD", raising=False)


def test_root_password_turns_the_admin_port_on(tmp_path, monkeypatch):
    """The host key is generated 0600, its fingerprint logged, the port added."""
    monkeypatch.setenv("PARTYPOOL_ROOT_PASSWORD", "root secret")
    listeners, log = build(tmp_path)
    [admin] = [c for c in listeners if c.label == "admin port"]
    assert isinstance(admin.factory, AdminFactory)
    host_key = tmp_path / "data" / "ssh" / "host_key"
    assert host_key.stat().st_mode & 0o777 == 0o600
    assert any(line.startswith("SSH host key fingerprint SHA256:") for line in log)


def test_authorized_keys_alone_turn_it_on_and_manhole_is_opt_in(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "authorized_keys").write_bytes(new_key().public().toString("openssh"))
    listeners, _ = build(tmp_path, "--manhole")
    [admin] = [c for c in listeners if c.label == "admin port"]
    assert admin.factory.portal.realm.manhole is True


def test_no_password_and_no_keys_leaves_it_off_and_says_so(tmp_path):
    listeners, log = build(tmp_path)
    assert [c.label for c in listeners] == ["chat port", "web door"]
    assert any(line.startswith("admin port off: no root password") for line in log)


def test_no_admin(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTYPOOL_ROOT_PASSWORD", "root secret")
    listeners, _ = build(tmp_path, "--no-admin")
    assert [c.label for c in listeners] == ["chat port", "web door"]
    assert not (tmp_path / "data" / "ssh").exists()


def test_bad_authorized_keys_stop_start_up(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "authorized_keys").write_text("ssh-ed25519 not-base64!\n")
    with pytest.raises(usage.UsageError, match="authorized_keys line 1"):
        build(tmp_path)

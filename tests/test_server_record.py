"""Packages that connect: the running server records its ports, and the
invite and packaging tools read them (issue 17, "Packages that connect")."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred

from partypool import datadir
from partypool import invite as inv
from partypool.datadir import ServerRecord
from partypool.service import PublishAddress
from tests.test_invite import make_data_dir

REPO = Path(__file__).resolve().parent.parent


@attrs.define
class FakePort:
    address: object

    def getHost(self) -> object:  # noqa: N802
        return self.address


@attrs.define
class FakeListener:
    label: str
    listening: Deferred = attrs.Factory(Deferred)


@attrs.define
class StartingReactor:
    """A reactor that has not run yet: `callWhenRunning` waits for `run`
    (the real one installs its signal handlers first)."""

    waiting: list = attrs.Factory(list)

    def callWhenRunning(self, f, *args) -> None:  # noqa: N802
        self.waiting.append((f, args))

    def run(self) -> None:
        for f, args in self.waiting:
            f(*args)


def test_ports_are_recorded_once_all_listen(tmp_path: Path) -> None:
    """Nothing is written until every door listens; then each door's bound
    port, and the chat host when it is a single address.  The announcement
    ("Ctrl-C stops it") waits until the reactor runs."""
    chat, admin = FakeListener("chat port"), FakeListener("admin port")
    announced: list[ServerRecord] = []
    reactor = StartingReactor()
    service = PublishAddress(
        [chat, admin],
        tmp_path,
        server_name="party",
        tls=True,
        reactor=reactor,
        announce=announced.append,
    )
    service.startService()
    chat.listening.callback(FakePort(IPv4Address("TCP", "127.0.0.1", 24345)))
    assert datadir.read_server_record(tmp_path) is None and not announced
    admin.listening.callback(FakePort(IPv6Address("TCP", "::", 24346)))
    record = datadir.read_server_record(tmp_path)
    assert record == ServerRecord(
        ports={"chat": 24345, "admin": 24346},
        server_name="party",
        tls=True,
        host="127.0.0.1",
    )
    assert announced == []
    reactor.run()
    assert announced == [record]


def test_wildcard_chat_address_records_no_host(tmp_path: Path) -> None:
    web = FakeListener("web door")  # a door is named by its label's first word
    irc = FakeListener("IRC gateway")  # in lower case
    chat = FakeListener("chat port")
    doors = [chat, web, irc]
    PublishAddress(
        doors, tmp_path, server_name="p", tls=False, reactor=StartingReactor()
    ).startService()
    for port, door in enumerate(doors, 1):
        door.listening.callback(FakePort(IPv4Address("TCP", "0.0.0.0", port)))
    record = datadir.read_server_record(tmp_path)
    assert record is not None and record.host is None
    assert record.ports == {"chat": 1, "web": 2, "irc": 3}


def arguments(data_dir: Path, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    inv.add_server_arguments(parser)
    return parser.parse_args(["--data-dir", str(data_dir), *argv])


def test_invite_names_the_recorded_ports_and_flags_win(tmp_path: Path) -> None:
    """A server on 24345 gets invites for 24345, not 12345."""
    data = tmp_path / "data"
    make_data_dir(data)
    datadir.write_server_record(
        data,
        ServerRecord(ports={"chat": 24345, "admin": 24346}, server_name="p", tls=True),
    )
    invite = inv.invite_from_arguments(arguments(data, "--host", "h.example"))
    assert (invite.chat_port, invite.admin_port, invite.server_name) == (
        24345,
        24346,
        "p",
    )
    flagged = inv.invite_from_arguments(
        arguments(data, "--host", "h", "--port", "2000", "--server-name", "q")
    )
    assert (flagged.chat_port, flagged.admin_port, flagged.server_name) == (
        2000,
        24346,
        "q",
    )


def test_record_without_admin_port_or_tls(tmp_path: Path) -> None:
    """A server run with --no-admin --no-tls: the invite says so by itself,
    and the host it listens on (one address) is the default host."""
    data = tmp_path / "data"
    data.mkdir()
    datadir.write_server_record(
        data, ServerRecord(ports={"chat": 5000}, server_name="p", tls=False, host="::1")
    )
    invite = inv.invite_from_arguments(arguments(data))
    assert (invite.host, invite.chat_port, invite.admin_port, invite.tls) == (
        "::1",
        5000,
        None,
        False,
    )


def test_no_record_keeps_the_defaults_and_needs_a_host(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data_dir(data)
    invite = inv.invite_from_arguments(arguments(data, "--host", "h"))
    assert (invite.chat_port, invite.admin_port) == (12345, 12346)
    with pytest.raises(inv.InviteError, match="--host is required"):
        inv.invite_from_arguments(arguments(data))


def test_invite_command_uses_the_kept_passkey(tmp_path: Path) -> None:
    """partypool-invite with no flag but the data dir: recorded ports and the
    passkey the operator kept there, no prompt."""
    data = tmp_path / "data"
    make_data_dir(data)
    data.chmod(0o700)
    datadir.store_secret(data, "passkey", "kept passkey")
    datadir.write_server_record(
        data,
        ServerRecord(
            ports={"chat": 24345, "admin": 24346},
            server_name="p",
            tls=True,
            host="127.0.0.1",
        ),
    )
    out = tmp_path / "invite.json"
    result = subprocess.run(
        [sys.executable, "-m", "partypool.invite", "--data-dir", str(data)]
        + ["--output", str(out)],
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "p at 127.0.0.1:24345, admin port 24346" in result.stderr
    invite = inv.open_invite(out.read_bytes(), "kept passkey")
    assert (invite.host, invite.chat_port) == ("127.0.0.1", 24345)


def test_client_port_flag_overrides_the_invite(tmp_path: Path, monkeypatch) -> None:
    """The frozen client ignored --port; now it reaches the invite's server
    on the port given (a forwarded one), keeping the invite's pin."""
    from partypool.client import main as client

    sealed = inv.seal_invite(
        inv.Invite(
            host="h.example",
            chat_port=24345,
            admin_port=None,
            tls=True,
            tls_fingerprint="AB:CD",
            ssh_fingerprint=None,
            server_name="p",
        ),
        "pk",
        iterations=1000,
    )
    path = tmp_path / "invite.json"
    path.write_bytes(sealed)
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "pk")
    known = ["--known-servers", str(tmp_path / "known")]
    options = client.parse_args(["--invite", str(path), *known])
    address, _ = client.server_address(options)
    assert (address.host, address.port, address.pin) == ("h.example", 24345, "AB:CD")
    options = client.parse_args(["--invite", str(path), "--port", "2000", *known])
    address, _ = client.server_address(options)
    assert (address.host, address.port, address.pin) == ("h.example", 2000, "AB:CD")

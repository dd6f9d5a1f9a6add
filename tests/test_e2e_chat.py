"""End to end: the real ``twistd -n partypool`` process, and a client that knows
only PROTOCOL.md (tests/wire_client.py), over TLS on loopback."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import start_server
from tests.wire_client import WireClient

pytestmark = pytest.mark.slow


def test_three_clients_log_in_and_chat(chat_server):
    """Login, names, fan-out, ONLINE, IP and QUIT work for a stranger's client."""
    clients = []
    for name, source in (
        ("alice", "127.0.0.2"),
        ("bob", "127.0.0.3"),
        ("carol", "127.0.0.4"),
    ):
        client = chat_server.client(source=source)
        assert client.hello.startswith("HELLO partypool/1 ")
        client.join(chat_server.passkey, name)
        clients.append(client)
    alice, bob, carol = clients
    assert alice.expect("JOINED") == "JOINED bob"
    assert alice.expect("JOINED") == "JOINED carol"
    assert bob.expect("JOINED") == "JOINED carol"

    alice.send("SAY hello <b>everyone</b> \x1b[2J")
    assert bob.expect("CHAT") == "CHAT alice hello <b>everyone</b> [2J"
    assert carol.expect("CHAT") == "CHAT alice hello <b>everyone</b> [2J"

    bob.send("online")
    assert bob.expect("ONLINE") == "ONLINE 3 alice bob carol"
    carol.send("IP")
    assert carol.expect("IP") == "IP 127.0.0.4"

    carol.send("QUIT off to bed")
    assert carol.expect("BYE") == "BYE quit"
    assert carol.closed()
    assert alice.expect("LEFT") == "LEFT carol quit: off to bed"
    for client in clients:
        client.close()


def test_wrong_passkey_is_refused(chat_server):
    client = chat_server.client()
    with pytest.raises(AssertionError, match="auth-failed"):
        client.login("not the passkey")
    assert client.closed()


def test_names_taken_reserved_invalid_and_same_ip(chat_server):
    first = chat_server.client(source="127.0.0.5")
    first.join(chat_server.passkey, "Dave")
    second = chat_server.client(source="127.0.0.6")
    second.login(chat_server.passkey)
    for name, code in (
        ("dave", "nick-taken"),
        ("ROOT", "nick-invalid"),
        ("a b", "nick-invalid"),
    ):
        second.send(f"NICK {name}")
        assert second.expect("ERR").startswith(f"ERR {code} ")
    second.send("NICK erin")
    assert second.expect("OK NICK") == "OK NICK erin"

    same_ip = chat_server.client(source="127.0.0.5")
    assert same_ip.expect("ERR").startswith("ERR duplicate-ip ")
    assert same_ip.expect("BYE") == "BYE duplicate-ip"
    for client in (first, second, same_ip):
        client.close()


def test_request_is_stored_and_server_restarts_on_same_port(tmp_path):
    """REQUEST is committed to SQLite; a restart can bind the same port at once."""
    server = start_server(tmp_path / "data")
    client = server.client()
    client.join(server.passkey, "frank")
    client.send("REQUEST more snacks please")
    reply = client.expect("OK REQUEST")
    request_id = int(reply.split()[2])
    client.close()
    port = server.chat_port
    assert server.stop() == 0

    database = sqlite3.connect(tmp_path / "data" / "partypool.sqlite3")
    row = database.execute(
        "SELECT name, address, text, created_at FROM requests WHERE id = ?",
        (request_id,),
    ).fetchone()
    database.close()
    assert row[:3] == ("frank", "127.0.0.1", "more snacks please")
    assert row[3].endswith("+00:00")

    again = start_server(tmp_path / "data", "--chat", f"tcp:{port}:interface=127.0.0.1")
    assert again.chat_port == port
    client = again.client()
    client.join(again.passkey, "frank")
    client.close()
    assert again.stop() == 0


def test_plain_tcp_and_sigterm_says_bye(tmp_path):
    """--no-tls serves plain text; SIGTERM tells every client BYE and exits 0."""
    server = start_server(tmp_path / "data", "--no-tls")
    client = WireClient(server.host, server.chat_port, tls=False)
    client.join(server.passkey, "gina")
    assert server.stop() == 0
    assert client.expect("BYE") == "BYE server stopping"
    assert client.closed()


def test_sigterm_right_after_start_still_exits_0(tmp_path):
    """A stop that comes before the reactor runs is as clean as any other."""
    for _ in range(3):
        server = start_server(tmp_path / "data", "--no-tls")
        assert server.stop() == 0

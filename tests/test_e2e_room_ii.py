"""End to end, Room II: history, private messages and root on the chat port,
against the real ``twistd -n partypool`` over TLS on loopback, restarted once
on the same data directory."""

from __future__ import annotations

import re

import pytest

from tests.conftest import start_server
from tests.wire_client import WireClient

pytestmark = pytest.mark.slow

ROOT_PASSWORD = "e2e root password"
STAMP = r"HISTORY (\d+) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "


def history(client: WireClient) -> list[str]:
    client.send("HISTORY")
    lines = []
    while not (line := client.read_line()).startswith("HISTORY-END"):
        lines.append(line)
    assert line == f"HISTORY-END {len(lines)}"
    return lines


def test_history_private_messages_and_root_on_the_chat_port(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    password_file = tmp_path / "root-password"
    password_file.write_text(ROOT_PASSWORD + "\n")
    password_file.chmod(0o600)
    args = ("--root-password-file", str(password_file), "--no-admin")
    server = start_server(data, *args)
    clients: list[WireClient] = []
    try:
        alice = server.joined("alice", source="127.0.0.2")
        bob = server.joined("bob", source="127.0.0.3")
        clients += [alice, bob]
        alice.send("SAY first, before carol")
        assert bob.expect("CHAT") == "CHAT alice first, before carol"
        bob.send("SAY second")
        assert alice.expect("CHAT") == "CHAT bob second"

        carol = server.joined("carol", source="127.0.0.4")  # the late joiner
        clients.append(carol)
        kept = history(carol)
        assert [re.sub(STAMP, "", line) for line in kept] == [
            "CHAT alice first, before carol",
            "CHAT bob second",
        ]

        alice.send("MSG CAROL psst, only you")
        assert alice.expect("OK MSG") == "OK MSG carol"
        assert carol.expect("PRIVATE") == "PRIVATE alice psst, only you"
        bob.send("PING after-the-whisper")  # bob's next line is the PONG
        assert bob.expect("JOINED") == "JOINED carol"
        assert bob.read_line() == "PONG after-the-whisper"

        root = server.client(source="127.0.0.2")  # alice's address: root is exempt
        clients.append(root)
        root.login(ROOT_PASSWORD, username="root")
        root.send("NICK root")
        assert root.expect("OK NICK") == "OK NICK root"
        assert carol.expect("JOINED") == "JOINED root"
        bob.send("REQUEST more snacks please")
        request_id = bob.expect("OK REQUEST").split(" ")[2]
        assert root.expect("REQUESTED") == (
            f"REQUESTED {request_id} bob more snacks please"
        )
        root.send("ADMIN mute -u bob -t 300")
        assert root.expect("ADMIN-OUT") == (
            "ADMIN-OUT muted bob for 300 s (and address 127.0.0.3)"
        )
        assert root.expect("ADMIN-END") == "ADMIN-END 0"
        bob.send("SAY am I heard?")
        assert bob.expect("ERR") == "ERR muted you are muted for another 300 s"
        root.send("ADMIN remove -u alice")
        assert root.expect("ADMIN-END") == "ADMIN-END 0"
        assert alice.expect("BYE") == "BYE removed by admin"
        assert carol.expect("LEFT") == "LEFT alice removed by admin"
        carol.send("SAY thanks, root")
        assert root.expect("CHAT") == "CHAT carol thanks, root"
        for client in clients:
            client.close()
        clients.clear()
        assert server.stop() == 0

        server = start_server(data, *args)  # a restart keeps the history
        dave = server.joined("dave", source="127.0.0.5")
        clients.append(dave)
        again = history(dave)
        assert again[:2] == kept
        assert [re.sub(STAMP, "", line) for line in again] == [
            "CHAT alice first, before carol",
            "CHAT bob second",
            "CHAT carol thanks, root",
        ]
        assert [re.match(STAMP, line)[1] for line in again] == ["1", "2", "3"]
        assert "psst" not in server.output()  # private messages are not logged
    finally:
        for client in clients:
            client.close()
        if server.process.poll() is None:
            server.stop()

"""partypool-root's SSH connection, unit-tested on a StringTransport: what it
says when the port it reached is not an admin port."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.admin_connect import (
    AdminConnectError,
    Credentials,
    HostKeyCheck,
    _AdminTransport,
)
from partypool.client.known_servers import KnownServers

CHAT_PORT_HINT = (
    "this looks like the chat port; the admin (SSH) port is another one (default 12346)"
)


class WrongPortTests(SynchronousTestCase):
    """Newcomer 2, finding 12: pointed at the chat port, partypool-root says
    so instead of "closed before the SSH handshake finished"."""

    def closed_after(self, data: bytes) -> str:
        """The error when the server says C{data} and closes."""
        check = HostKeyCheck(
            "127.0.0.1",
            12345,
            None,
            KnownServers(Path(self.mktemp()) / "known_admin_hosts"),
            lambda note: None,
        )
        client = _AdminTransport(check, Credentials(password=b"secret"))
        transport = StringTransport()
        client.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"SSH-2.0-"))
        if data:
            client.dataReceived(data)
        client.connectionLost(Failure(ConnectionDone()))
        return str(self.failureResultOf(client.ready, AdminConnectError).value)

    def test_tls_chat_port(self) -> None:
        """A TLS chat port waits for a ClientHello, gets our version line
        instead and closes without a word: no SSH server does that."""
        text = self.closed_after(b"")
        self.assertIn("127.0.0.1 port 12345 closed the connection without", text)
        self.assertIn(CHAT_PORT_HINT, text)

    def test_tls_alert(self) -> None:
        """A TLS stack that answers with an alert record."""
        text = self.closed_after(b"\x15\x03\x01\x00\x02\x02\x46")
        self.assertIn("answered in TLS, not SSH", text)
        self.assertIn(CHAT_PORT_HINT, text)

    def test_plain_chat_port(self) -> None:
        """A chat port without TLS greets first: named as what it is."""
        text = self.closed_after(b"HELLO partypool/1 Test \x1b[2JPool\r\n")
        self.assertIn("greeted with 'HELLO partypool/1 Test [2JPool'", text)
        self.assertIn(CHAT_PORT_HINT, text)

    def test_other_service(self) -> None:
        text = self.closed_after(b"220 mail.example ESMTP\r\n")
        self.assertIn("is not an SSH server (it said '220 mail.example ESMTP')", text)

    def test_ssh_server_closing_mid_handshake(self) -> None:
        """An SSH server that said its version and then closed is still
        reported as one."""
        text = self.closed_after(b"SSH-2.0-OpenSSH_9.2\r\n")
        self.assertEqual(
            text, "the server closed the connection before the SSH handshake finished"
        )


def test_root_asks_for_the_admin_address(monkeypatch) -> None:
    """The partypool menu asks the client's question, then root's: root's
    says it wants the admin (SSH) address, not the chat one."""
    import sys

    from partypool.client.root import find_target, parse_args

    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return "chat.example"

    monkeypatch.setattr("builtins.input", answer)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("partypool.client.root.embedded_invite", lambda: None)
    target = find_target(parse_args([]))
    assert (target.host, target.port) == ("chat.example", 12346)
    [prompt] = asked
    assert prompt.startswith("Admin (SSH) address, not the chat one")
    assert "12346" in prompt

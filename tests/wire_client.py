"""A chat client written only from ../shared/PROTOCOL.md: ``ssl`` + ``scramp``.

It deliberately imports nothing from partypool, so the end-to-end tests prove
that a stranger's client can log in and chat.  Blocking sockets with
timeouts keep every wait bounded.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl

import scramp

TIMEOUT = 10.0


class ProtocolError(AssertionError):
    pass


class WireClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = True,
        fingerprint: str | None = None,
        source: str | None = None,
    ) -> None:
        raw = socket.create_connection(
            (host, port),
            timeout=TIMEOUT,
            source_address=(source, 0) if source else None,
        )
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # pinned by fingerprint below
            raw = context.wrap_socket(raw)
            der = raw.getpeercert(binary_form=True)
            seen = hashlib.sha256(der).hexdigest().upper()
            if fingerprint and seen != fingerprint.replace(":", "").upper():
                raise ProtocolError(f"certificate fingerprint {seen} is not pinned")
        self.sock = raw
        self._buffer = b""
        self.hello = self.read_line()

    def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")

    def read_line(self, timeout: float = TIMEOUT) -> str:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unread {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode("utf-8")

    def expect(self, prefix: str, timeout: float = TIMEOUT) -> str:
        """Read lines until one starts with ``prefix``; fail on an unexpected ERR."""
        while True:
            line = self.read_line(timeout)
            if line.startswith(prefix):
                return line
            if line.startswith(("ERR", "BYE")) and not prefix.startswith(
                ("ERR", "BYE")
            ):
                raise ProtocolError(f"wanted {prefix!r}, got {line!r}")

    def login(self, passkey: str) -> None:
        client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", passkey)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        self.send(f"AUTH SCRAM-SHA-256 {first}")
        challenge = self.expect("AUTH-CHALLENGE ").split(" ", 1)[1]
        client.set_server_first(base64.b64decode(challenge).decode())
        final = base64.b64encode(client.get_client_final().encode()).decode()
        self.send(f"AUTH-RESPONSE {final}")
        ok = self.expect("AUTH-OK ").split(" ", 1)[1]
        client.set_server_final(base64.b64decode(ok).decode())  # checks the signature

    def join(self, passkey: str, name: str) -> None:
        self.login(passkey)
        self.send(f"NICK {name}")
        assert self.expect("OK NICK") == f"OK NICK {name}"

    def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed the connection (after any unread lines)."""
        try:
            while True:
                self.read_line(timeout)
        except EOFError:
            return True

    def close(self) -> None:
        self.sock.close()

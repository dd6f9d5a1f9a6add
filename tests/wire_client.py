"""A chat client written only from docs/protocol.md: ``ssl`` + ``scramp``.

It deliberately imports nothing from partypool, so the end-to-end tests prove
that a stranger's client can log in and chat.  Blocking sockets with
timeouts keep every wait bounded.

One thread may read while another sends (tests/test_hardening.py's
`Reader`): an OpenSSL connection must not be used by two threads at once, so
every ``recv`` and ``send`` holds one lock, and a reader waits for data in
``select`` without it.
"""

from __future__ import annotations

import base64
import hashlib
import select
import socket
import ssl
import threading
import time

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
        self._adopt(raw)

    def _adopt(self, sock: socket.socket) -> None:
        """Use ``sock`` (connected, TLS done) and read the greeting."""
        self.sock = sock
        self._buffer = b""
        self._lock = threading.Lock()
        self.hello = self.read_line()

    def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        with self._lock:
            self.sock.sendall(data + b"\r\n")

    def read_line(self, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self._buffer:
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            left = deadline - time.monotonic()
            if not pending and not select.select([self.sock], [], [], max(0, left))[0]:
                raise TimeoutError(f"no line within {timeout} s")
            with self._lock:
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

    def login(self, passkey: str, username: str = "chat") -> None:
        client = scramp.ScramClient(["SCRAM-SHA-256"], username, passkey)
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

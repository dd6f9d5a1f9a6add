"""A man in the middle for the client tests (issue 13.1): a real TLS relay.

It listens on 127.0.0.1 with a certificate of its own, opens a TLS
connection to the real server for each client, and forwards the bytes both
ways, line by line in plain text in between, rewriting ``CHAT`` lines to show
it could. Threads and the standard ``ssl`` module: nothing of Party Pool's,
no reactor in the test process. Every socket has a timeout, so it ends by
itself.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

from partypool.tls import ensure_self_signed

TIMEOUT = 20.0


class TLSRelay:
    """Relays 127.0.0.1:<port> (TLS, own certificate) to the server."""

    def __init__(self, directory: Path, server_host: str, server_port: int) -> None:
        cert, key = ensure_self_signed(directory / "relay-tls")
        self._server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_side.load_cert_chain(cert, key)
        self._client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._client_side.check_hostname = False
        self._client_side.verify_mode = ssl.CERT_NONE
        self._target = (server_host, server_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.forwarded: list[bytes] = []  # what the client sent, as seen here
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with self._listener:
            while True:
                try:
                    raw, _ = self._listener.accept()
                except OSError:
                    return
                self.connections += 1
                threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        raw.settimeout(TIMEOUT)
        try:
            client = self._server_side.wrap_socket(raw, server_side=True)
            upstream = self._client_side.wrap_socket(
                socket.create_connection(self._target, timeout=TIMEOUT)
            )
        except OSError:
            raw.close()
            return
        threading.Thread(
            target=self._pump, args=(upstream, client, self._rewrite), daemon=True
        ).start()
        self._pump(client, upstream, self._record)

    def _record(self, line: bytes) -> bytes:
        self.forwarded.append(line)
        return line

    @staticmethod
    def _rewrite(line: bytes) -> bytes:
        if line.startswith(b"CHAT "):
            return b"CHAT mallory the relay rewrote this\r\n"
        return line

    @staticmethod
    def _pump(source: ssl.SSLSocket, sink: ssl.SSLSocket, change) -> None:
        buffer = b""
        try:
            while data := source.recv(65536):
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    sink.sendall(change(line + b"\n"))
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self._listener.close()

"""A fake chat server for end-to-end client tests (issues 13.5–13.7).

Plain TCP on 127.0.0.1, one connection, one thread, the standard library and
scramp: it greets, optionally completes a genuine SCRAM-SHA-256 login (it
knows the passkey) or never does, accepts one NICK, sends the hostile lines
it was given, and then records what the client sends until ``QUIT`` or the
timeout. Nothing of Party Pool's server code is involved.
"""

from __future__ import annotations

import base64
import socket
import threading

from scramp import ScramMechanism

TIMEOUT = 20.0


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class FakeChatServer:
    """@param before_login: lines sent right after HELLO (then it closes:
        it cannot prove the passkey).
    @param after_join: lines sent once the client's NICK was accepted."""

    def __init__(
        self,
        passkey: str,
        *,
        before_login: list[str] | None = None,
        after_join: list[str] | None = None,
    ) -> None:
        self.passkey = passkey
        self.before_login = before_login
        self.after_join = after_join or []
        self.received: list[str] = []
        self.done = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            with self._listener:
                conn, _ = self._listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                self._talk(conn, conn.makefile("rb"))
        except OSError:
            pass
        finally:
            self.done.set()

    def _send(self, conn: socket.socket, *lines: str) -> None:
        conn.sendall(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def _read(self, reader) -> str:
        line = reader.readline().decode("utf-8").rstrip("\r\n")
        self.received.append(line)
        return line

    def _talk(self, conn: socket.socket, reader) -> None:
        self._send(conn, "HELLO partypool/1 Fake Pool")
        if self.before_login is not None:
            self._read(reader)  # AUTH
            self._send(conn, *self.before_login)
            return
        mechanism = ScramMechanism("SCRAM-SHA-256")
        info = mechanism.make_auth_info(self.passkey, iteration_count=4096)
        scram = mechanism.make_server(lambda username: info)
        scram.set_client_first(_unb64(self._read(reader).split(" ")[2]))
        self._send(conn, f"AUTH-CHALLENGE {_b64(scram.get_server_first())}")
        scram.set_client_final(_unb64(self._read(reader).split(" ")[1]))
        self._send(conn, f"AUTH-OK {_b64(scram.get_server_final())}")
        name = self._read(reader).split(" ", 1)[1]
        self._send(conn, f"OK NICK {name}", *self.after_join)
        while line := reader.readline():
            text = line.decode("utf-8").rstrip("\r\n")
            self.received.append(text)
            if text.startswith("HISTORY"):
                self._send(conn, "HISTORY-END 0")
            if text.startswith("QUIT"):
                self._send(conn, "BYE quit")
                return

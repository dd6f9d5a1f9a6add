"""One load process for ``python -m partypool.bench``: many lean chat clients.

The benchmark measures the server, so the clients must cost as little as
possible: one process drives thousands of connections from a single epoll
loop over non-blocking (TLS) sockets, with no framework and no per-line
objects.  The controller (`partypool.bench`) starts several of these and talks
to each over its stdin/stdout, one JSON object per line:

- ``{"cmd": "setup", ...}``: the server's address, TLS or not, the passkey;
  ``"baseline": true`` for the reference server (`partypool.bench.baseline`),
  which has no SCRAM: its login is ``HELLO`` then ``NICK``; ``"irc": true``
  for the IRC gateway: SASL SCRAM-SHA-256, ``NICK``/``USER``, ``PRIVMSG``.
- ``{"cmd": "login", ...}``: open ``count`` connections, at most ``in_flight``
  logging in at once; each does TLS, SCRAM-SHA-256 (not for the baseline)
  and ``NICK``, then stays (or sends ``QUIT`` if ``quit_after``).  Replies
  with how many made it.
- ``{"cmd": "send", ...}``: the first ``senders`` clients each send
  ``per_sender`` messages at ``rate`` per second from ``start_ns``, spread
  evenly over each period (or all at once with ``lockstep``).  Each
  message carries its send time (``time.monotonic_ns``, one clock for every
  process on the machine) so the receiver can compute latency.
- ``{"cmd": "drain", "expect": n, "timeout": s}``: wait until ``n`` bench
  messages have arrived here (or ``timeout``), write the latencies to a file
  and reply with the counts.
- ``{"cmd": "exit"}``.

Between commands the loop keeps reading every socket and answers the
server's keepalive ``PING`` with ``PONG``.
"""

from __future__ import annotations

import array
import base64
import errno
import functools
import json
import os
import resource
import selectors
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

import scramp
import scramp.core

# Every login to one server run has the same salt and iteration count, so the
# client-side PBKDF2 result is the same each time: scramp's derivation is
# cached per load process, or the driver would spend more CPU on it than the
# server spends on a whole login (W5).  The SCRAM exchange itself is scramp's.
_derive = scramp.core.hi


@functools.lru_cache(maxsize=8)
def _derive_once(hf: object, password: bytes, salt: bytes, iterations: int) -> bytes:
    return _derive(hf, password, salt, iterations)


scramp.core.hi = lambda hf, password, salt, iterations: _derive_once(
    hf, password, salt, int(iterations)
)

MARK = b"bench"  # first word of every benchmark message's text
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class LoginError(Exception):
    """The server refused a login, or said something a login does not expect."""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Client:
    """One connection: a login state machine, then a fast receive path."""

    __slots__ = (
        "sock",
        "name",
        "state",
        "buffer",
        "out",
        "events",
        "scram",
        "quit_after",
    )

    def __init__(self, sock: socket.socket, name: str, quit_after: bool) -> None:
        self.sock = sock
        self.name = name
        self.state = "connecting"
        self.buffer = b""
        self.out = b""
        self.events = _WRITE
        self.scram: scramp.ScramClient | None = None
        self.quit_after = quit_after


class Worker:
    """The event loop, the clients it drives, and what they have received."""

    def __init__(self) -> None:
        self.selector = selectors.EpollSelector()
        self.clients: list[Client] = []  # logged in, in login order
        self.latencies = array.array("q")  # nanoseconds, one per bench message
        self.pings_answered = 0
        self.errors: list[str] = []
        self._pending: list[str] = []  # names still to connect
        self._names = 0
        self._in_flight = 0
        self._logged_in = 0
        self._failed = 0
        self._commands = b""
        self._sends: list[tuple[int, Client, int]] = []  # (due ns, client, seq)
        self._sent = 0
        self._max_lag_ns = 0
        self._waiting: Callable[[], dict | None] | None = None
        self._quit_after = False
        self._pad = b""
        self._cpu_at_send = _cpu_seconds()
        os.set_blocking(sys.stdin.fileno(), False)
        self.selector.register(sys.stdin.fileno(), _READ, None)

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Serve sockets, timed sends and commands until told to exit."""
        select, monotonic_ns = self.selector.select, time.monotonic_ns
        while True:
            timeout = 0.05
            if self._sends:
                timeout = max(0.0, (self._sends[-1][0] - monotonic_ns()) / 1e9)
            for key, mask in select(min(timeout, 0.05)):
                client = key.data
                if client is None:
                    if not self._read_commands():
                        return
                elif mask & _WRITE:
                    self._on_writable(client)
                else:
                    self._on_readable(client)
            if self._sends:
                self._send_due(monotonic_ns())
            if self._waiting is not None:
                reply = self._waiting()
                if reply is not None:
                    self._waiting = None
                    self._reply(reply)

    def _reply(self, message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def _read_commands(self) -> bool:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            return False  # the controller went away: stop
        self._commands += chunk
        *lines, self._commands = self._commands.split(b"\n")
        for line in lines:
            command = json.loads(line)
            handler = getattr(self, "cmd_" + command.pop("cmd"))
            if handler(**command) is False:
                return False
        return True

    # -- commands ------------------------------------------------------------

    def cmd_setup(
        self,
        host: str,
        port: int,
        tls: bool,
        passkey: str,
        out_dir: str,
        ident: str,
        baseline: bool = False,
        irc: bool = False,
    ) -> None:
        self.host, self.port, self.ident = host, port, ident
        self.irc = irc
        self.out_dir = Path(out_dir)
        self.passkey = passkey
        self.baseline = baseline
        self.tls: ssl.SSLContext | None = None
        if tls:
            # Loopback benchmark against a throw-away self-signed certificate:
            # the fingerprint check real clients do is not what is measured.
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        self._reply({"ready": True})

    def cmd_login(self, count: int, in_flight: int, quit_after: bool = False) -> None:
        start = time.monotonic()
        first = self._names
        self._names += count
        self._pending = [f"{self.ident}n{n}" for n in range(first, self._names)][::-1]
        self._logged_in = self._failed = 0
        self._in_flight = 0
        self._quit_after = quit_after
        for _ in range(min(in_flight, count)):
            self._connect_next()

        def done() -> dict | None:
            if self._pending or self._in_flight:
                return None
            return {
                "logged_in": self._logged_in,
                "failed": self._failed,
                "seconds": time.monotonic() - start,
                "errors": self.errors[:5],
            }

        self._waiting = done

    def cmd_send(
        self,
        senders: int,
        per_sender: int,
        rate: float,
        start_ns: int,
        first: int = 0,
        of: int = 1,
        lockstep: bool = False,
        pad: int = 0,
    ) -> None:
        """Our first ``senders`` clients are senders ``first``… of ``of`` in all;
        all of them spread their sends evenly over each period, or with
        ``lockstep`` send at the same instants."""
        self._pad = b"x" * pad
        step = int(1e9 / rate)
        for index, client in enumerate(self.clients[:senders], start=first):
            offset = start_ns if lockstep else start_ns + index * step // of
            for seq in range(per_sender):
                self._sends.append((offset + seq * step, client, seq))
        self._sends.sort(key=lambda item: item[0], reverse=True)  # pop() = next
        self._sent = 0
        self.latencies = array.array("q")
        self._cpu_at_send = _cpu_seconds()
        self._max_lag_ns = 0

        def done() -> dict | None:
            if self._sends:
                return None
            return {"sent": self._sent, "max_lag_ms": self._max_lag_ns / 1e6}

        self._waiting = done

    def cmd_drain(self, expect: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def done() -> dict | None:
            if len(self.latencies) < expect and time.monotonic() < deadline:
                return None
            path = self.out_dir / f"latency-{self.ident}.bin"
            path.write_bytes(self.latencies.tobytes())
            return {
                "received": len(self.latencies),
                "latency_file": str(path),
                "connected": sum(c.state == "chatting" for c in self.clients),
                "pings_answered": self.pings_answered,
                "cpu": _cpu_seconds() - self._cpu_at_send,
                "errors": self.errors[:5],
            }

        self._waiting = done

    def cmd_exit(self) -> bool:
        for client in self.clients:
            client.sock.close()
        return False

    # -- connecting and logging in --------------------------------------------

    def _connect_next(self) -> None:
        if not self._pending:
            return
        name = self._pending.pop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(sock, name, self._quit_after)
        self._in_flight += 1
        code = sock.connect_ex((self.host, self.port))
        if code not in (0, errno.EINPROGRESS):
            self._login_failed(client, os.strerror(code), registered=False)
            return
        self.selector.register(sock.fileno(), _WRITE, client)

    def _on_writable(self, client: Client) -> None:
        if client.state == "connecting":
            code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._login_failed(client, os.strerror(code))
                return
            if self.tls is None:
                self._greet(client)
                return
            client.sock = self.tls.wrap_socket(
                client.sock, do_handshake_on_connect=False
            )
            client.state = "handshake"
        if client.state == "handshake":
            self._handshake(client)
        else:
            self._flush(client)

    def _handshake(self, client: Client) -> None:
        try:
            client.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(client, _READ)
            return
        except ssl.SSLWantWriteError:
            self._want(client, _WRITE)
            return
        except (OSError, ssl.SSLError) as e:
            self._login_failed(client, f"TLS: {e}")
            return
        self._greet(client)

    def _greet(self, client: Client) -> None:
        """The server greets a v1 client; an IRC client speaks first."""
        client.state = "hello"
        self._want(client, _READ)
        if self.irc:
            name = client.name
            self._send(
                client,
                f"CAP REQ :sasl\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\n"
                "AUTHENTICATE SCRAM-SHA-256\r\n".encode(),
            )

    def _want(self, client: Client, events: int) -> None:
        if client.events != events:
            client.events = events
            self.selector.modify(client.sock.fileno(), events, client)

    def _send(self, client: Client, data: bytes) -> None:
        client.out += data
        self._flush(client)

    def _flush(self, client: Client) -> None:
        try:
            while client.out:
                client.out = client.out[client.sock.send(client.out) :]
        except _WOULD_BLOCK:
            self._want(client, _READ | _WRITE)
            return
        except OSError as e:
            self._lost(client, f"send: {e}")
            return
        self._want(client, _READ)

    def _login_line(self, client: Client, line: bytes) -> None:
        if self.irc:
            return self._irc_login_line(client, line)
        verb, _, rest = line.decode("utf-8", "replace").partition(" ")
        state = client.state
        if verb in ("ERR", "BYE"):
            raise LoginError(f"{state}: {line[:120]!r}")
        if state == "hello" and verb == "HELLO" and self.baseline:
            self._nick(client)
        elif state == "hello" and verb == "HELLO":
            client.scram = scramp.ScramClient(["SCRAM-SHA-256"], "chat", self.passkey)
            first = client.scram.get_client_first()
            self._send(
                client, f"AUTH SCRAM-SHA-256 {_b64(first.encode())}\r\n".encode()
            )
            client.state = "challenge"
        elif state == "challenge" and verb == "AUTH-CHALLENGE":
            client.scram.set_server_first(base64.b64decode(rest).decode())
            final = client.scram.get_client_final()
            self._send(client, f"AUTH-RESPONSE {_b64(final.encode())}\r\n".encode())
            client.state = "auth-ok"
        elif state == "auth-ok" and verb == "AUTH-OK":
            try:
                client.scram.set_server_final(base64.b64decode(rest).decode())
            except scramp.ScramException as e:
                raise LoginError(f"the server's SCRAM signature is wrong: {e}") from e
            client.scram = None
            self._nick(client)
        elif state == "nick" and line == b"OK NICK " + client.name.encode():
            self._in_room(client)
        elif verb not in ("JOINED", "LEFT", "PING"):
            raise LoginError(f"{state}: unexpected {line[:120]!r}")

    def _in_room(self, client: Client) -> None:
        self._logged_in += 1
        self._in_flight -= 1
        if client.quit_after:
            self._send(client, b"QUIT\r\n")
            self._close(client)
        else:
            client.state = "chatting"
            self.clients.append(client)
        self._connect_next()

    def _irc_login_line(self, client: Client, line: bytes) -> None:
        """SASL SCRAM-SHA-256 through ``AUTHENTICATE``, then 366 (the end of
        the channel's names) means the client is in the room."""
        words = line.split(b" ")
        if words[0].startswith(b":"):
            words = words[1:]
        command = words[0]
        if command in (b"ERROR", b"464", b"904", b"432", b"433"):
            raise LoginError(f"{client.state}: {line[:120]!r}")
        if command == b"AUTHENTICATE":
            payload = words[1].decode()
            if client.state == "hello":
                client.scram = scramp.ScramClient(
                    ["SCRAM-SHA-256"], "chat", self.passkey
                )
                message = client.scram.get_client_first()
                client.state = "challenge"
            elif client.state == "challenge":
                client.scram.set_server_first(base64.b64decode(payload).decode())
                message = client.scram.get_client_final()
                client.state = "auth-ok"
            else:
                client.scram.set_server_final(base64.b64decode(payload).decode())
                client.scram = None
                self._send(client, b"AUTHENTICATE +\r\n")
                return
            self._send(client, f"AUTHENTICATE {_b64(message.encode())}\r\n".encode())
        elif command == b"903":
            self._send(client, b"CAP END\r\n")
            client.state = "nick"
        elif command == b"366":
            self._in_room(client)
        elif command == b"PING":
            self._send(client, b"PONG " + words[1] + b"\r\n")

    def _nick(self, client: Client) -> None:
        self._send(client, f"NICK {client.name}\r\n".encode())
        client.state = "nick"

    def _login_failed(self, client: Client, why: str, registered: bool = True) -> None:
        self._failed += 1
        self._in_flight -= 1
        self.errors.append(f"{client.name}: {why}")
        if registered:
            self._close(client)
        else:
            client.sock.close()
        self._connect_next()

    def _close(self, client: Client) -> None:
        self.selector.unregister(client.sock.fileno())
        client.sock.close()
        client.state = "closed"

    def _lost(self, client: Client, why: str) -> None:
        if client.state == "chatting":
            self.errors.append(f"{client.name} lost: {why}")
            self._close(client)
        elif client.state != "closed":
            self._login_failed(client, why)

    # -- receiving -------------------------------------------------------------

    def _on_readable(self, client: Client) -> None:
        if client.state == "handshake":
            self._handshake(client)
            return
        sock = client.sock
        try:
            data = sock.recv(262144)
            while self.tls is not None and sock.pending():
                data += sock.recv(262144)
        except _WOULD_BLOCK:
            return
        except OSError as e:
            self._lost(client, f"recv: {e}")
            return
        if not data:
            self._lost(client, "closed by the server")
            return
        lines = (client.buffer + data).split(b"\r\n")
        client.buffer = lines.pop()
        if client.state == "chatting":
            self._chat_lines(client, lines)
            return
        try:
            for line in lines:
                if client.state == "chatting":
                    self._chat_lines(client, [line])
                else:
                    self._login_line(client, line)
        except (LoginError, ValueError, KeyError) as e:
            self._login_failed(client, str(e))

    def _chat_lines(self, client: Client, lines: list[bytes]) -> None:
        """Record the latency of each bench message; answer keepalive pings."""
        if self.irc:
            return self._irc_chat_lines(client, lines)
        now = time.monotonic_ns()
        record = self.latencies.append
        for line in lines:
            if line.startswith(b"CHAT "):
                # CHAT <name> bench <sent ns> <seq> [padding]
                parts = line.split(b" ", 5)
                if parts[2] == MARK:
                    record(now - int(parts[3]))
            elif line.startswith(b"PING "):
                self.pings_answered += 1
                self._send(client, b"PONG " + line[5:] + b"\r\n")

    def _irc_chat_lines(self, client: Client, lines: list[bytes]) -> None:
        now = time.monotonic_ns()
        record = self.latencies.append
        for line in lines:
            # :<source> PRIVMSG #party :bench <sent ns> <seq> [padding]
            parts = line.split(b" ", 6)
            if len(parts) > 4 and parts[1] == b"PRIVMSG" and parts[3] == b":" + MARK:
                record(now - int(parts[4]))
            elif parts[0] == b"PING" or parts[1:2] == [b"PING"]:
                self.pings_answered += 1
                self._send(client, b"PONG " + parts[-1].lstrip(b":") + b"\r\n")

    # -- sending -----------------------------------------------------------------

    def _send_due(self, now: int) -> None:
        sends = self._sends
        while sends and sends[-1][0] <= now:
            due, client, seq = sends.pop()
            self._max_lag_ns = max(self._max_lag_ns, now - due)
            stamp = time.monotonic_ns()
            verb = b"PRIVMSG #party :" if self.irc else b"SAY "
            self._send(
                client, b"%s%s %d %d %s\r\n" % (verb, MARK, stamp, seq, self._pad)
            )
            self._sent += 1


def main() -> None:
    Worker().run()


if __name__ == "__main__":
    main()

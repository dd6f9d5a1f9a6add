"""``python -m partypool.bench.baseline``: a plain Twisted broadcast loop.

Issue 8 states its W2 and W3 targets against reference servers measured on
its author's machine ("a plain Twisted broadcast loop measures about 2.0 and
1.5 µs", "a plain Twisted TLS server measures about 25 KB").  Absolute
numbers depend on the machine, so `partypool.bench` runs this reference in
the same run as Party Pool, under the same load, and reports the ratio.

It is deliberately the most straightforward code a Twisted user would write:
the default reactor, a `LineReceiver`, one loop over a set of clients for each
message, and Twisted's stock TLS (`PrivateCertificate.options()`, default
settings, nothing tuned).  The protocol is just what the load worker needs:
``HELLO baseline`` on connect, ``NICK <name>`` → ``OK NICK <name>``,
``SAY <text>`` → ``CHAT <name> <text>`` to everyone else, ``PING x`` →
``PONG x``, ``QUIT``.  No limits, no authentication.

It listens on 127.0.0.1, port 0, and writes the port to ``--port-file`` once
listening.  SIGTERM stops the reactor (Twisted's own signal handling).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from twisted.internet import reactor, ssl
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

HOST = "127.0.0.1"
BACKLOG = 1024  # as the bench gives Party Pool: 200 connects in flight


class BroadcastChat(LineReceiver):
    """One client; its ``SAY`` goes to every other client with a nick."""

    delimiter = b"\r\n"
    name = b""

    def connectionMade(self) -> None:  # noqa: N802
        self.sendLine(b"HELLO baseline")

    def connectionLost(self, reason: object) -> None:  # noqa: N802
        self.factory.clients.discard(self)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        verb, _, rest = line.partition(b" ")
        if verb == b"SAY":
            data = b"CHAT " + self.name + b" " + rest + b"\r\n"
            for client in self.factory.clients:
                if client is not self:
                    client.transport.write(data)
        elif verb == b"NICK":
            self.name = rest
            self.factory.clients.add(self)
            self.sendLine(b"OK NICK " + rest)
        elif verb == b"PING":
            self.sendLine(b"PONG " + rest)
        elif verb == b"QUIT":
            self.transport.loseConnection()


class BroadcastFactory(Factory):
    protocol = BroadcastChat

    def __init__(self) -> None:
        self.clients: set[BroadcastChat] = set()


def listen(factory: Factory, tls: tuple[Path, Path] | None) -> int:
    """Listen on loopback (TLS with ``(cert, key)`` PEM files); return the port."""
    if tls is None:
        port = reactor.listenTCP(0, factory, backlog=BACKLOG, interface=HOST)
    else:
        cert, key = tls
        pem = cert.read_bytes() + key.read_bytes()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        port = reactor.listenSSL(0, factory, options, backlog=BACKLOG, interface=HOST)
    return port.getHost().port


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m partypool.bench.baseline", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--port-file", type=Path, required=True, help="write the port here"
    )
    parser.add_argument(
        "--tls", nargs=2, type=Path, metavar=("CERT", "KEY"), help="serve TLS"
    )
    args = parser.parse_args(argv)
    port = listen(BroadcastFactory(), args.tls)
    # Whole or absent: the bench polls for this file.
    partial = args.port_file.with_name(args.port_file.name + ".tmp")
    partial.write_text(f"{port}\n")
    os.replace(partial, args.port_file)
    reactor.run()


if __name__ == "__main__":
    main()

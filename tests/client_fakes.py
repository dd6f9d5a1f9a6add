"""A scripted chat server for client unit tests: real SCRAM (scramp's server
side), lines fed straight into the client protocol, no sockets."""

from __future__ import annotations

import base64

from scramp import ScramException, ScramMechanism
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

PASSKEY = "correct horse battery staple"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class ScriptedServer:
    """Plays the server's side of one client connection."""

    def __init__(self, proto: Protocol, passkey: str = PASSKEY) -> None:
        self.proto = proto
        self.transport = StringTransport()
        proto.makeConnection(self.transport)
        mechanism = ScramMechanism("SCRAM-SHA-256")
        auth_info = mechanism.make_auth_info(passkey, iteration_count=4096)
        self.scram = mechanism.make_server(lambda username: auth_info)

    def send(self, *lines: str) -> None:
        for line in lines:
            self.proto.dataReceived(line.encode() + b"\r\n")

    def received(self) -> list[str]:
        """Lines the client sent since the last call."""
        data = self.transport.value().decode()
        self.transport.clear()
        return data.splitlines()

    def log_in(self, server_final: str | None = None) -> None:
        """HELLO and a full SCRAM exchange, refused like the real server
        does for a wrong passkey; C{server_final} replaces the genuine
        server-final message (to test the signature check)."""
        self.send("HELLO partypool/1 Test Pool")
        [auth] = self.received()
        verb, mechanism, first = auth.split(" ")
        assert (verb, mechanism) == ("AUTH", "SCRAM-SHA-256")
        self.client_first = unb64(first)
        self.scram.set_client_first(self.client_first)
        self.send(f"AUTH-CHALLENGE {b64(self.scram.get_server_first())}")
        [response] = self.received()
        verb, final = response.split(" ")
        assert verb == "AUTH-RESPONSE"
        try:
            self.scram.set_client_final(unb64(final))
        except ScramException:
            self.send("ERR auth-failed wrong passkey", "BYE auth-failed")
            return
        self.send(f"AUTH-OK {b64(server_final or self.scram.get_server_final())}")

    def lose(self) -> None:
        """The connection drops (the client's transport tells it)."""
        self.transport.loseConnection()
        self.proto.connectionLost(Failure(ConnectionLost("gone")))

"""In-memory building blocks for unit tests: a core on a fake clock, protocols
on StringTransports, SCRAM from the client side, and a fake room member."""

from __future__ import annotations

import base64

import attrs
import scramp
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from partypool.admin.commands import AdminCommands, Operator
from partypool.doors.chat import ChatFactory, ChatProtocol
from partypool.room.auth import ChatVerifier
from partypool.room.pool import Limits, PartyPool, make_server
from partypool.room.room import Event
from partypool.room.store import TooManyRequests

PASSKEY = "unit test passkey"
VERIFIER = ChatVerifier.from_passkey(PASSKEY, 4096)
ROOT_PASSWORD = "unit test root password"
ROOT_VERIFIER = ChatVerifier.from_passkey(ROOT_PASSWORD, 4096)


class FakeStore:
    """Stands in for partypool.room.store.Store where a test is about the protocol."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.history: list = []  # partypool.room.history.Entry
        self.failing = False

    def add_request(
        self, name: str, address: str, text: str, *, per_day: int
    ) -> defer.Deferred:
        if self.failing:
            return defer.fail(OSError("disk full"))
        if len(self.requests) >= per_day:  # tests use one user per store
            return defer.fail(TooManyRequests())
        self.requests.append((name, address, text))
        return defer.succeed(len(self.requests))

    def add_history(self, entries: list, first_kept: int) -> defer.Deferred:
        self.history = [e for e in self.history + entries if e.id >= first_kept]
        return defer.succeed(None)

    def prune_history(self, before: float, first_kept: int) -> defer.Deferred:
        kept = [e for e in self.history if e.at >= before and e.id >= first_kept]
        gone, self.history = len(self.history) - len(kept), kept
        return defer.succeed(gone)

    def clear_history(self) -> defer.Deferred:
        gone, self.history = len(self.history), []
        return defer.succeed(gone)


def unit_limits(**changes: object) -> Limits:
    """`Limits` with no write budget unless given one: every round of room
    events then runs at the end of its turn, and a fake clock need not move
    for it (tests/test_gather.py tests the budget)."""
    return Limits(**{"write_rate": float("inf"), **changes})


def make_pool(clock: Clock | None = None, *, root: bool = False, **kwargs) -> PartyPool:
    """A core on a fake clock; ``root``: root may log in on the chat port
    (with ROOT_PASSWORD) and run the admin commands there."""
    limits = kwargs.pop("limits", unit_limits())
    pool = make_server(
        verifier=VERIFIER,
        store=kwargs.pop("store", FakeStore()),
        clock=clock or Clock(),
        server_name="unit",
        limits=limits,
        root_verifier=ROOT_VERIFIER if root else None,
        **kwargs,
    )
    pool.defer_to_thread = defer.maybeDeferred  # no threads in unit tests
    if root:
        pool.root_commands = lambda peer, door: AdminCommands(
            pool, Operator(f"password ({door})", peer)
        )
    return pool


@attrs.define(eq=False)
class Peer:
    """One protocol under test, its transport, and the lines it has sent."""

    protocol: ChatProtocol
    transport: StringTransport

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            data = line.encode("utf-8") if isinstance(line, str) else line
            self.protocol.dataReceived(data + b"\r\n")

    def received(self) -> list[str]:
        """Lines sent to this peer since the last call (the reactor turn ended,
        so room events held for the round are written too)."""
        self.protocol.pool.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]

    def lose(self) -> None:
        self.protocol.connectionLost(None)

    def login(self, passkey: str = PASSKEY, username: str = "chat") -> list[str]:
        client = scramp.ScramClient(["SCRAM-SHA-256"], username, passkey)
        self.send("AUTH SCRAM-SHA-256 " + _b64(client.get_client_first()))
        [challenge] = self.received()
        verb, payload = challenge.split(" ")
        assert verb == "AUTH-CHALLENGE"
        client.set_server_first(_unb64(payload))
        self.send("AUTH-RESPONSE " + _b64(client.get_client_final()))
        reply = self.received()
        if reply[0].startswith("AUTH-OK "):
            client.set_server_final(_unb64(reply[0].split(" ")[1]))
        return reply

    def join(self, name: str) -> None:
        assert self.login()[0].startswith("AUTH-OK ")
        self.send(f"NICK {name}")
        assert self.received() == [f"OK NICK {name}"]


def connect(pool: PartyPool, host: str = "127.0.0.1", port: int = 40000) -> Peer:
    protocol = ChatFactory(pool).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    protocol.makeConnection(transport)
    return Peer(protocol, transport)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


@attrs.define(eq=False)
class FakeMember:
    """A room member that records what it is told."""

    host: str
    name: str | None = None
    peer: str = ""
    since: float = 0.0
    events: list[Event] = attrs.Factory(list)
    goodbye: str | None = None

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def disconnect(self, reason: str) -> None:
        self.goodbye = reason

    def lines(self) -> list[str]:
        return [e.wire.decode().rstrip("\r\n") for e in self.events]

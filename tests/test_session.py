"""A `Session` with no transport at all: a fake `Outlet` and direct calls.

This is what a new front door (a WebSocket door, an IRC gateway) does: hand
the session whole lines and give it somewhere to write.
"""

from __future__ import annotations

import scramp
from twisted.internet.task import Clock

from partypool.room.session import CLOSE_GRACE, Session
from tests.helpers import PASSKEY, _b64, _unb64, make_pool


class FakeOutlet:
    """Records what a session writes, and whether it closed or aborted."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    gather = write  # room events, never held here (tests/test_gather.py holds them)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def lines(self) -> list[str]:
        """Lines written since the last call."""
        data, self.data = self.data, b""
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]


def open_session(pool, host: str) -> tuple[Session, FakeOutlet]:
    outlet = FakeOutlet()
    session = Session(pool, host, f"{host}:1", outlet, handshaking=False)
    session.start()
    assert outlet.lines() == ["HELLO partypool/1 unit"]
    return session, outlet


def log_in(session: Session, outlet: FakeOutlet, name: str) -> None:
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", PASSKEY)
    session.line(b"AUTH SCRAM-SHA-256 " + _b64(client.get_client_first()).encode())
    [challenge] = outlet.lines()
    verb, payload = challenge.split(" ")
    assert verb == "AUTH-CHALLENGE"
    client.set_server_first(_unb64(payload))
    session.line(b"AUTH-RESPONSE " + _b64(client.get_client_final()).encode())
    [ok] = outlet.lines()
    assert ok.startswith("AUTH-OK ")
    client.set_server_final(_unb64(ok.split(" ")[1]))  # the server proved itself
    session.line(f"NICK {name}".encode())
    assert outlet.lines() == [f"OK NICK {name}"]
    assert session.state == "chatting"


def test_sessions_chat_without_any_transport():
    """Login over SCRAM, NICK, and a SAY that reaches the other session."""
    pool = make_pool()
    alice, alice_out = open_session(pool, "127.0.0.2")
    bob, bob_out = open_session(pool, "127.0.0.3")
    log_in(alice, alice_out, "alice")
    log_in(bob, bob_out, "bob")
    assert alice_out.lines() == ["JOINED bob"]
    alice.line(b"SAY hello from nowhere")
    assert alice_out.lines() == []
    assert bob_out.lines() == ["CHAT alice hello from nowhere"]
    assert pool.room.names() == ["alice", "bob"]
    assert pool.connections == {alice, bob} and not pool.pending_logins


def test_session_ends_through_its_outlet():
    """QUIT says BYE and asks the outlet to close, with an abort as the
    backstop; ``lost`` then cleans up; ``too_slow`` aborts without a BYE."""
    clock = Clock()
    pool = make_pool(clock)
    alice, alice_out = open_session(pool, "127.0.0.2")
    bob, bob_out = open_session(pool, "127.0.0.3")
    log_in(alice, alice_out, "alice")
    log_in(bob, bob_out, "bob")
    alice_out.lines()
    bob.line(b"QUIT bye now")
    assert bob_out.lines() == ["BYE quit"]
    assert bob_out.closed and not bob_out.aborted
    assert alice_out.lines() == ["LEFT bob quit: bye now"]
    clock.advance(CLOSE_GRACE)
    assert bob_out.aborted  # the peer never let the connection close
    bob.lost()
    alice.too_slow()
    assert alice_out.aborted and alice_out.lines() == []
    assert alice.closed and len(pool.room) == 0
    alice.lost()
    assert clock.getDelayedCalls() == []
    assert not pool.connections and not pool.pending_logins

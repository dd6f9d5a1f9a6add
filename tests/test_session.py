"""Sessions with no transport at all: the v1 dialect over a fake `Outlet`,
and the door-neutral `Session` driven by plain calls.

The first is what a WebSocket door does (hand the v1 dialect whole lines and
give it somewhere to write); the second what a door with a dialect of its
own, such as an IRC gateway, does.
"""

from __future__ import annotations

import pytest
import scramp
from twisted.internet.task import Clock
from twisted.logger import Logger

from partypool.doors.v1 import V1Dialect
from partypool.room.room import Event
from partypool.room.session import CLOSE_GRACE, Session
from partypool.wire import WireError
from tests.helpers import PASSKEY, ROOT_PASSWORD, _b64, _unb64, make_pool, unit_limits

log = Logger(namespace="tests.session")


class FakeOutlet:
    """Records what a session writes, and whether it closed or aborted."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False
        self.aborted = False
        self.after_gather = lambda: None

    def write(self, data: bytes) -> None:
        self.data += data

    def gather(self, data: bytes) -> None:
        """Room events, never held here (tests/test_gather.py holds them)."""
        self.write(data)
        self.after_gather()

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def lines(self) -> list[str]:
        """Lines written since the last call."""
        data, self.data = self.data, b""
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]


def open_session(pool, host: str) -> tuple[V1Dialect, FakeOutlet]:
    outlet = FakeOutlet()
    dialect = V1Dialect(pool, host, f"{host}:1", outlet, handshaking=False, log=log)
    dialect.start()
    assert outlet.lines() == ["HELLO partypool/1 unit"]
    return dialect, outlet


def log_in(session: V1Dialect, outlet: FakeOutlet, name: str) -> None:
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
    assert session.session.state == "chatting"


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
    assert pool.connections == {alice.session, bob.session}
    assert not pool.unauthenticated


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
    bob.session.lost()
    alice.session.too_slow()
    assert alice_out.aborted and alice_out.lines() == []
    assert alice.session.closed and len(pool.room) == 0
    alice.session.lost()
    assert clock.getDelayedCalls() == []
    assert not pool.connections and not pool.unauthenticated


class RecordingDoor:
    """A door with a dialect of its own: keeps what the session says as objects."""

    def __init__(self) -> None:
        self.said: list[tuple] = []
        self.closed = False
        self.aborted = False

    def deliver(self, event: Event) -> None:
        self.said.append(("event", event.verb, *event.parts))

    def error(self, error: WireError) -> None:
        self.said.append(("error", error.code))

    def ping(self, token: str) -> None:
        self.said.append(("ping",))

    def goodbye(self, reason: str, error: WireError | None) -> None:
        self.said.append(("goodbye", reason, error and error.code))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def test_a_door_with_its_own_dialect_drives_the_session_by_calls():
    """No v1 line anywhere: SCRAM by calls, a name, a message received as
    an event object, the names, and a quit the v1 side sees as LEFT."""
    clock = Clock()
    pool = make_pool(clock)
    door = RecordingDoor()
    session = Session(
        pool,
        "127.0.0.4",
        "127.0.0.4:1",
        door,
        handshaking=False,
        log=log,
        door_name="test door",
    )
    assert session.start()
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", PASSKEY)
    assert session.admit_line()
    client.set_server_first(session.scram_first(client.get_client_first()))
    client.set_server_final(session.scram_final(client.get_client_final()))
    assert session.join("carol") == "carol"
    alice, alice_out = open_session(pool, "127.0.0.2")
    log_in(alice, alice_out, "alice")
    alice.line(b"SAY hi carol")
    assert door.said == [
        ("event", "JOINED", "alice"),
        ("event", "CHAT", "alice", "hi carol"),
    ]
    assert session.names() == ["alice", "carol"]
    with pytest.raises(WireError) as refused:
        session.say("\x07 ")
    assert refused.value.code == "bad-syntax"
    session.quit("bye\x1b[2J")
    assert door.said[-1] == ("goodbye", "quit", None) and door.closed
    assert alice_out.lines() == ["LEFT carol quit: bye[2J"]
    session.lost()
    alice.session.lost()
    pool.history.flush()  # the room's own timer (its history's next write)
    assert clock.getDelayedCalls() == []
    assert not pool.connections and not pool.unauthenticated


def test_the_session_says_its_own_errors_and_pings_through_the_door():
    """A wrong proof ends the login with auth-failed (counted by the
    throttle); an idle session is pinged through the door."""
    clock = Clock()
    pool = make_pool(clock, limits=unit_limits(idle_ping=10))
    door = RecordingDoor()
    session = Session(
        pool,
        "127.0.0.5",
        "127.0.0.5:1",
        door,
        handshaking=False,
        log=log,
        door_name="test door",
    )
    session.start()
    clock.advance(pool.limits.idle_ping)
    assert door.said == [("ping",)]
    client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", "wrong passkey")
    client.set_server_first(session.scram_first(client.get_client_first()))
    assert session.scram_final(client.get_client_final()) is None
    assert door.said[-1] == ("goodbye", "auth-failed", "auth-failed")
    assert pool.throttle.recent_failures("127.0.0.5") == 1
    session.lost()
    assert clock.getDelayedCalls() == []


def test_a_member_closed_mid_broadcast_gets_nothing_after_its_bye():
    """The room delivers from a snapshot of its members: one that says BYE
    while an event is on its way (here, as the event reaches the member
    before it) must not be written that event after the BYE."""
    pool = make_pool()
    alice, alice_out = open_session(pool, "127.0.0.2")
    bob, bob_out = open_session(pool, "127.0.0.3")
    carol, carol_out = open_session(pool, "127.0.0.4")
    for dialect, outlet, name in (
        (alice, alice_out, "alice"),
        (bob, bob_out, "bob"),
        (carol, carol_out, "carol"),
    ):
        log_in(dialect, outlet, name)
    bob_out.lines()

    bob_out.after_gather = lambda: carol.session.disconnect("removed by admin")
    alice.line(b"SAY one last thing")
    assert bob_out.lines() == [
        "CHAT alice one last thing",
        "LEFT carol removed by admin",
    ]
    assert carol_out.lines()[-1] == "BYE removed by admin"


def test_a_door_may_log_in_with_the_secret_itself():
    """For IRC's PASS and SASL PLAIN: the right secret logs in (as root with
    the root password), a wrong one fails like a wrong SCRAM proof and counts
    in the same throttle, and a throttled address is refused before any check."""
    pool = make_pool(root=True)
    door = RecordingDoor()
    session = Session(
        pool,
        "127.0.0.6",
        "127.0.0.6:1",
        door,
        handshaking=False,
        log=log,
        door_name="test door",
    )
    session.start()
    done = session.login_secret("chat", PASSKEY)
    assert done.result is True and session.state == "naming" and not session.is_root
    assert session.join("dora") == "dora"

    root = Session(
        pool,
        "127.0.0.7",
        "127.0.0.7:1",
        door,
        handshaking=False,
        log=log,
        door_name="test door",
    )
    root.start()
    assert root.login_secret("root", ROOT_PASSWORD).result is True and root.is_root

    for username, secret in (("chat", "wrong"), ("root", PASSKEY), ("admin", PASSKEY)):
        wrong_door = RecordingDoor()
        wrong = Session(
            pool,
            "127.0.0.8",
            "127.0.0.8:1",
            wrong_door,
            handshaking=False,
            log=log,
            door_name="test door",
        )
        wrong.start()
        assert wrong.login_secret(username, secret).result is False
        assert wrong_door.said[-1] == ("goodbye", "auth-failed", "auth-failed")
        wrong.lost()
    assert pool.throttle.recent_failures("127.0.0.8") == 3
    for _ in range(2):
        pool.throttle.failed("127.0.0.8")
    refused_door = RecordingDoor()
    refused = Session(
        pool,
        "127.0.0.8",
        "127.0.0.8:2",
        refused_door,
        handshaking=False,
        log=log,
        door_name="test door",
    )
    refused.start()
    pool.defer_to_thread = None  # never reached
    assert refused.login_secret("chat", PASSKEY).result is False
    assert refused_door.said[-1] == ("goodbye", "auth-throttled", "auth-throttled")

"""Room II on the chat port: private messages, mutes and root, through the
v1 dialect on a StringTransport with a task.Clock."""

from __future__ import annotations

import pytest
import scramp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from partypool.admin.commands import AdminCommands, Operator, Result
from tests.helpers import PASSKEY, ROOT_PASSWORD, _b64, connect, make_pool


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock):
    return make_pool(clock, root=True)


def named(pool, name: str, host: str):
    peer = connect(pool, host=host)
    peer.received()
    peer.join(name)
    return peer


def as_root(pool, host: str = "127.0.0.1", port: int = 40000):
    root = connect(pool, host=host, port=port)
    assert root.received() == ["HELLO partypool/1 unit"]
    assert root.login(ROOT_PASSWORD, username="root")[0].startswith("AUTH-OK ")
    return root


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[dict]) -> str:
    return "\n".join(formatEvent(e) for e in events)


# -- MSG ------------------------------------------------------------------------


def test_a_private_message_reaches_only_its_target(pool, logged):
    """OK MSG with the name as the room spells it; PRIVATE to the target
    only; the text is not logged without --log-messages."""
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "Bob", "127.0.0.3")
    carol = named(pool, "carol", "127.0.0.4")
    for peer in (alice, bob, carol):
        peer.received()
    alice.send("MSG bOB meet me at nine")
    assert alice.received() == ["OK MSG Bob"]
    assert bob.received() == ["PRIVATE alice meet me at nine"]
    assert carol.received() == []
    assert "meet me" not in texts(logged)


def test_private_message_errors(pool):
    alice = named(pool, "alice", "127.0.0.2")
    for line, error in (
        ("MSG nobody hello", "ERR no-such-user no user named nobody"),
        ("MSG alice", "ERR bad-syntax usage: MSG <name> <text>"),
        ("MSG alice    ", "ERR bad-syntax usage: MSG <name> <text>"),
        ("MSG", "ERR bad-syntax usage: MSG <name> <text>"),
        (
            "MSG alice " + "x" * 2001,
            "ERR text-too-long text is longer than 2000 characters",
        ),
    ):
        alice.send(line)
        assert alice.received() == [error], line
    before = connect(pool, host="127.0.0.5")
    before.received()
    before.send("MSG alice hi")
    assert before.received()[0].startswith("ERR auth-required ")


def test_private_messages_are_rate_limited_like_any_line(pool):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received(), bob.received()
    pool.clock.advance(10)  # a full bucket again after the login lines
    for i in range(pool.limits.burst + 1):
        alice.send(f"MSG bob {i}")
    replies = alice.received()
    assert replies[-1].startswith("ERR rate-limited ")
    assert len(bob.received()) == pool.limits.burst


def test_log_messages_logs_private_messages_too():
    pool = make_pool(log_messages=True)
    alice = named(pool, "alice", "127.0.0.2")
    named(pool, "bob", "127.0.0.3")
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        alice.send("MSG bob psst")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert "<alice to bob> psst" in texts(events)


# -- mute -----------------------------------------------------------------------


def test_a_muted_user_is_refused_say_and_msg_but_nothing_else(pool, clock):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    pool.mutes.mute("bob", frozenset({"127.0.0.3"}), 50)
    clock.advance(20)
    bob.send("SAY hello?", "MSG alice hello?", "ONLINE")
    assert bob.received() == [
        "ERR muted you are muted for another 30 s",
        "ERR muted you are muted for another 30 s",
        "ONLINE 2 alice bob",
    ]
    assert alice.received() == []
    clock.advance(30)
    bob.send("SAY back")
    assert alice.received() == ["CHAT bob back"]


def test_a_mute_holds_across_a_reconnect_by_name_or_address(pool):
    bob = named(pool, "bob", "127.0.0.3")
    pool.mutes.mute("bob", frozenset({"127.0.0.3"}), None)
    bob.send("QUIT")
    bob.lose()
    again = named(pool, "BOB", "127.0.0.8")  # same name, another address
    again.send("SAY hi")
    assert again.received() == [
        "ERR muted you are muted until the administrator lifts it"
    ]
    other = named(pool, "robert", "127.0.0.3")  # same address, another name
    other.send("MSG BOB hi")
    assert other.received()[0].startswith("ERR muted ")
    assert pool.mutes.unmute("Bob")
    other.send("MSG bob hi")
    assert other.received() == ["OK MSG BOB"]


def test_with_several_users_per_address_a_mute_is_by_name_only(clock):
    """--allow-same-ip: the address may be a proxy's; muting bob must not
    silence alice beside him."""
    pool = make_pool(clock, root=True, allow_same_ip=True)
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.2")
    root = as_root(pool)
    root.send("ADMIN mute -u bob -t 60")
    assert root.received() == [
        "ADMIN-OUT muted bob for 60 s (by name only: the server allows several "
        "users per address)",
        "ADMIN-END 0",
    ]
    alice.received()
    bob.received()
    bob.send("SAY hello")
    assert bob.received() == ["ERR muted you are muted for another 60 s"]
    alice.send("SAY still here")
    assert alice.received() == []  # no error
    assert bob.received() == ["CHAT alice still here"]


# -- root on the chat port --------------------------------------------------------


def test_root_runs_admin_commands_on_the_chat_port(pool, logged):
    """ADMIN-OUT per line, then ADMIN-END with the admin port's status;
    logged with the login method and address like any root command."""
    root = as_root(pool)
    root.send("ADMIN list-conn -u")
    assert root.received() == ["ADMIN-OUT no connections", "ADMIN-END 0"]
    root.send("ADMIN remove -u nobody")
    assert root.received() == ["ADMIN-OUT no user named nobody", "ADMIN-END 1"]
    root.send("ADMIN list")
    lines = root.received()
    assert lines[-1] == "ADMIN-END 0" and len(lines) > 10
    assert any(line.startswith("ADMIN-OUT mute -u <name>") for line in lines)
    assert "root logged in on the chat port from 127.0.0.1:40000" in texts(logged)
    assert (
        "root (password (chat port) from 127.0.0.1:40000) ran 'list-conn -u': status 0"
        in texts(logged)
    )


def test_root_kicks_and_mutes_and_sees_requests_in_the_room(pool):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    root = as_root(pool)
    root.send("NICK root")
    assert root.received() == ["OK NICK root"]
    assert alice.received() == ["JOINED root"] and bob.received() == ["JOINED root"]
    bob.send("REQUEST more snacks")
    assert bob.received() == ["OK REQUEST 1"]
    assert root.received() == ["REQUESTED 1 bob more snacks"]
    assert alice.received() == []
    root.send("ADMIN mute -u alice -t 60")
    assert root.received() == [
        "ADMIN-OUT muted alice for 60 s (and address 127.0.0.2)",
        "ADMIN-END 0",
    ]
    alice.send("SAY can I speak?")
    assert alice.received() == [
        "NOTICE the administrator muted you for 60 s",
        "ERR muted you are muted for another 60 s",
    ]
    root.send("ADMIN remove -u bob")
    assert root.received() == [
        "LEFT bob removed by admin",
        "ADMIN-OUT removed 1 connection",
        "ADMIN-END 0",
    ]
    assert bob.received() == ["BYE removed by admin"]
    root.send("SAY behave, everyone")
    assert alice.received() == [
        "LEFT bob removed by admin",
        "CHAT root behave, everyone",
    ]


def test_admin_from_anyone_else_is_forbidden(pool):
    alice = named(pool, "alice", "127.0.0.2")
    alice.send("ADMIN list")
    assert alice.received() == ["ERR forbidden only root may run admin commands"]
    fresh = connect(pool, host="127.0.0.4")
    fresh.received()
    fresh.login()
    fresh.send("ADMIN list")
    assert fresh.received() == ["ERR forbidden only root may run admin commands"]


def test_root_is_the_only_one_who_may_be_root(pool):
    alice = named(pool, "alice", "127.0.0.2")
    alice.received()
    impostor = connect(pool, host="127.0.0.3")
    impostor.received()
    impostor.login()
    impostor.send("NICK root", "NICK ROOT")
    assert [line.split(" ")[1] for line in impostor.received()] == ["nick-invalid"] * 2
    root = as_root(pool, host="127.0.0.4")
    root.send("NICK alice2")
    assert root.received() == ["ERR nick-invalid a root session joins as root"]
    root.send("NICK Root")
    assert root.received() == ["OK NICK root"]
    second = as_root(pool, host="127.0.0.5")
    second.send("NICK root")
    assert second.received() == [
        "ERR nick-taken root is already in the room (another connection)",
        "BYE nick-taken",
    ]


def test_root_logins_need_the_root_password_and_count_in_the_throttle(pool):
    wrong = connect(pool, host="127.0.0.6")
    wrong.received()
    assert wrong.login("the chat passkey is not it", username="root")[:2] == [
        "ERR auth-failed wrong passkey or bad login",
        "BYE auth-failed",
    ]
    chat_passkey = connect(pool, host="127.0.0.6")
    chat_passkey.received()
    assert chat_passkey.login(PASSKEY, username="root")[0] == (
        "ERR auth-failed wrong passkey or bad login"
    )
    assert pool.throttle.recent_failures("127.0.0.6") == 2


def first_login_step(peer, username: str) -> list[str]:
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, "any")
    peer.send("AUTH SCRAM-SHA-256 " + _b64(client.get_client_first()))
    return peer.received()


def test_no_root_password_no_root_login():
    pool = make_pool()
    peer = connect(pool)
    peer.received()
    assert first_login_step(peer, "root") == [
        "ERR auth-failed wrong passkey or bad login",
        "BYE auth-failed",
    ]


def test_root_is_exempt_from_the_cap_and_the_address_rule(clock):
    """A full room, and a user already on root's address: a user is still
    refused (at its first login step), root gets in and takes no seat."""
    pool = make_pool(clock, root=True, max_clients=1)
    alice = named(pool, "alice", "127.0.0.2")
    alice.received()
    full = connect(pool, host="127.0.0.3")
    assert full.received() == ["HELLO partypool/1 unit"]
    assert first_login_step(full, "chat") == [
        "ERR server-full the server is full (1 users)",
        "BYE server-full",
    ]
    root = as_root(pool, host="127.0.0.2")
    root.send("NICK root")
    assert root.received() == ["OK NICK root"]
    assert pool.room.names() == ["alice", "root"]
    alice.send("QUIT")
    bob = named(pool, "bob", "127.0.0.4")  # root took no seat
    assert bob.protocol.session.state == "chatting"


def test_root_stays_without_joining_and_the_timers_end_with_it(pool, clock):
    """A root session needs no NICK: the login timeout does not end it; the
    keepalive still runs, and nothing is left scheduled after it goes."""
    root = as_root(pool)
    clock.advance(pool.limits.login_timeout + 1)
    root.send("PING x")
    assert root.received() == ["PONG x"]
    clock.advance(pool.limits.idle_ping)
    assert root.received()[0].startswith("PING ")
    root.lose()
    assert clock.getDelayedCalls() == []


def test_root_commands_answer_in_order(pool):
    """A slow command's answer comes before the answer of the one after it."""
    pending: list[Deferred] = []

    class Slow:
        def run(self, line: str) -> Deferred:
            if line == "slow":
                pending.append(Deferred())
                return pending[-1]
            return succeed(Result(f"ran {line}"))

    pool.root_commands = lambda peer, door: Slow()
    root = as_root(pool)
    root.send("ADMIN slow", "ADMIN quick")
    assert root.received() == []
    pending[0].callback(Result("ran slow", 3))
    assert root.received() == [
        "ADMIN-OUT ran slow",
        "ADMIN-END 3",
        "ADMIN-OUT ran quick",
        "ADMIN-END 0",
    ]


def test_manhole_needs_a_terminal_on_the_chat_port(pool):
    pool.root_commands = lambda peer, door: AdminCommands(
        pool, Operator("password (chat port)", peer), manhole=True
    )
    root = as_root(pool)
    root.send("ADMIN manhole")
    assert root.received() == [
        "ADMIN-OUT manhole needs a terminal: use the SSH admin port (ssh -t)",
        "ADMIN-END 1",
    ]


def test_admin_exit_ends_the_root_session_after_its_answer(pool):
    root = as_root(pool)
    root.send("ADMIN exit")
    assert root.received() == ["ADMIN-OUT logout", "ADMIN-END 0", "BYE quit"]
    assert root.protocol.session.closed


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("remove -u bob", "removed by admin"),
        ("remove -ip 127.0.0.3", "removed by admin"),
        ("ban -u bob", "banned by admin"),
        ("ban -ip 127.0.0.3", "banned by admin"),
    ],
)
def test_a_user_root_takes_out_is_logged_as_leaving(pool, logged, command, reason):
    """Every departure is in the log with its reason, not only a quit."""
    pool.store.add_ban = lambda kind, value, reason: succeed(None)
    alice = named(pool, "alice", "127.0.0.2")
    named(pool, "bob", "127.0.0.3")
    alice.received()
    root = as_root(pool)
    root.send(f"ADMIN {command}")
    assert root.received()[-1] == "ADMIN-END 0"
    assert alice.received() == [f"LEFT bob {reason}"]
    assert f"bob left: {reason}" in texts(logged)

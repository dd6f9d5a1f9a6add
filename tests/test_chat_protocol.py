"""The chat protocol driven through StringTransport and a fake Clock: every
state, verb and error code of protocol v1, the timers, framing and limits."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import directlyProvides

from partypool.admin.commands import Result
from partypool.doors.chat import ChatFactory
from tests.helpers import (
    ROOT_PASSWORD,
    FakeStore,
    Peer,
    connect,
    make_pool,
    unit_limits,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock):
    return make_pool(clock)


def named(pool, name: str, host: str):
    peer = connect(pool, host=host)
    peer.received()
    peer.join(name)
    return peer


def test_greeting_names_protocol_and_server(pool):
    peer = connect(pool)
    assert peer.received() == ["HELLO partypool/1 unit"]


def test_login_name_and_join_notice(pool):
    """SCRAM login, NICK, and JOINED for everyone already in the room."""
    alice = named(pool, "alice", "127.0.0.2")
    bob = connect(pool, host="127.0.0.3")
    bob.received()
    reply = bob.login()
    assert len(reply) == 1 and reply[0].startswith("AUTH-OK ")
    bob.send("nick Bob")
    assert bob.received() == ["OK NICK Bob"]
    assert alice.received() == ["JOINED Bob"]


def test_wrong_passkey_fails_closes_and_counts_for_throttle(pool):
    peer = connect(pool)
    peer.received()
    assert peer.login("wrong") == [
        "ERR auth-failed wrong passkey or bad login",
        "BYE auth-failed",
    ]
    assert peer.transport.disconnecting
    assert pool.throttle._failures["127.0.0.1"]


def test_throttled_address_is_refused(pool):
    for _ in range(5):
        pool.throttle.failed("127.0.0.9")
    peer = connect(pool, host="127.0.0.9")
    peer.received()
    peer.send("AUTH SCRAM-SHA-256 bj0=")
    assert peer.received()[0].startswith("ERR auth-throttled ")


@pytest.mark.parametrize(
    "line, reply",
    [
        ("AUTH PLAIN abc", "ERR auth-failed"),
        ("AUTH SCRAM-SHA-256 !!!notbase64", "ERR auth-failed"),
        ("AUTH SCRAM-SHA-256 " + "bixuPXJvb3Qscj1hYmM=", "ERR auth-failed"),  # n=root
        ("AUTH-RESPONSE abc", "ERR auth-required"),
        ("SAY hi", "ERR auth-required"),
        ("NICK bob", "ERR auth-required"),
        ("FROB", "ERR unknown-command"),
        ("", "ERR bad-syntax"),
        ("AUTH", "ERR bad-syntax"),
        (b"SAY \xff\xfe", "ERR bad-encoding"),
        ("PING", "PONG"),
        ("PING abc", "PONG abc"),
    ],
)
def test_lines_before_login(pool, line, reply):
    peer = connect(pool)
    peer.received()
    peer.send(line)
    assert peer.received()[0].startswith(reply)


@pytest.mark.parametrize(
    "line, code",
    [
        ("SAY hi", "nick-required"),
        ("ONLINE", "nick-required"),
        ("AUTH SCRAM-SHA-256 abc", "already-authenticated"),
        ("NICK root", "nick-invalid"),
        ("NICK ｒｏｏｔ", "nick-invalid"),
        ("NICK r\u200boot", "nick-invalid"),
        ("NICK " + "x" * 25, "nick-invalid"),
        ("NICK two words", "nick-invalid"),
    ],
)
def test_lines_before_a_name(pool, line, code):
    peer = connect(pool)
    peer.received()
    peer.login()
    peer.send(line)
    assert peer.received()[0].startswith(f"ERR {code} ")
    peer.send("NICK fine")  # the client may try again
    assert peer.received() == ["OK NICK fine"]


def test_taken_name_ignores_case_and_width(pool):
    named(pool, "Bob", "127.0.0.2")
    peer = connect(pool, host="127.0.0.3")
    peer.received()
    peer.login()
    for attempt in ("bob", "BOB", "ＢＯＢ"):
        peer.send(f"NICK {attempt}")
        assert peer.received()[0].startswith("ERR nick-taken ")


def test_chat_fan_out_scrubbed_and_not_echoed(pool):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    alice.send("SAY hi \x1b]0;pwned\x07 <b>\u202eevil\ttab")
    assert alice.received() == []
    assert bob.received() == ["CHAT alice hi ]0;pwned <b>evil tab"]
    assert pool.room.stats.messages == 1


def test_say_errors(pool):
    alice = named(pool, "alice", "127.0.0.2")
    for line, code in (
        ("SAY", "bad-syntax"),
        ("SAY \x07\x07", "bad-syntax"),
        ("SAY " + "x" * 2001, "text-too-long"),
        ("NICK other", "already-named"),
    ):
        alice.send(line)
        assert alice.received()[0].startswith(f"ERR {code} "), line


def test_online_ip_ping(pool):
    named(pool, "zed", "127.0.0.2")
    alice = named(pool, "Alice", "127.0.0.3")
    alice.send("ONLINE", "IP", "PING t1", "PONG whatever")
    assert alice.received() == ["ONLINE 2 Alice zed", "IP 127.0.0.3", "PONG t1"]
    alice.send("ONLINE now")
    assert alice.received()[0].startswith("ERR bad-syntax ")


def test_request_stored_then_confirmed():
    store = FakeStore()
    pool = make_pool(store=store)
    alice = named(pool, "alice", "127.0.0.2")
    alice.send("REQUEST more \x1b[31mcake")
    assert alice.received() == ["OK REQUEST 1"]
    assert store.requests == [("alice", "127.0.0.2", "more [31mcake")]
    alice.send("REQUEST " + "y" * 1001)
    assert alice.received()[0].startswith("ERR text-too-long ")
    store.failing = True
    alice.send("REQUEST again")
    assert alice.received() == ["ERR request-failed the request was not stored"]


def test_quit_tells_others_and_cleans_up(pool, clock):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.send("QUIT see you \x1b[2J removed by admin")
    assert bob.received() == ["BYE quit"]
    assert bob.transport.disconnecting
    assert alice.received() == ["LEFT bob quit: see you [2J removed by admin"]
    bob.lose()
    alice.lose()
    assert clock.getDelayedCalls() == []
    assert len(pool.room) == 0 and not pool.connections and not pool.unauthenticated


def test_lost_connection_is_announced(pool):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.lose()
    assert alice.received() == ["LEFT bob lost"]


def test_login_timeout(pool, clock):
    peer = connect(pool)
    peer.received()
    peer.login()
    clock.advance(29.9)
    assert peer.received() == []
    clock.advance(0.2)
    assert peer.received() == ["ERR timeout login took too long", "BYE timeout"]
    assert peer.transport.disconnecting
    peer.lose()
    assert clock.getDelayedCalls() == []
    assert not pool.unauthenticated


def test_goodbye_aborts_a_peer_that_never_closes(pool, clock):
    peer = connect(pool)
    peer.send("QUIT")
    assert not peer.transport.disconnected
    clock.advance(10)
    assert peer.transport.disconnected  # StringTransport records abortConnection


def test_keepalive_pings_then_drops_silent_client(pool, clock):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    clock.pump([1] * 59)  # Clock runs timers at the new time: move in small steps
    bob.send("PONG")  # any line is a sign of life
    clock.pump([1] * 59)  # t = 118
    assert bob.received() == []
    ping = alice.received()
    assert len(ping) == 1 and ping[0].startswith("PING ")
    clock.pump([1])
    assert bob.received()[0].startswith("PING ")
    clock.pump([1, 0.5])  # t = 120.5: alice silent for 60 s after her PING
    assert alice.received() == ["BYE timeout"]
    assert bob.received() == ["LEFT alice timeout"]
    clock.pump([1] * 58)  # bob answers his PING just in time and stays
    bob.send("PONG x")
    clock.pump([1] * 30)
    assert bob.protocol.session.state == "chatting"


def test_overlong_line_is_skipped_and_session_goes_on(pool):
    pool = make_pool(limits=unit_limits(max_line=512))
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    alice.protocol.dataReceived(b"SAY " + b"x" * 600 + b"\nSAY after\r\n")
    assert alice.received() == [
        "ERR line-too-long lines are at most 512 bytes; discarded"
    ]
    assert bob.received() == ["CHAT alice after"]
    # split across writes: the error comes once the limit is passed
    alice.protocol.dataReceived(b"SAY " + b"y" * 520)
    assert alice.received()[0].startswith("ERR line-too-long")
    alice.protocol.dataReceived(b"y" * 500)
    alice.protocol.dataReceived(b"yyy\nSAY ok\n")
    assert alice.received() == []
    assert bob.received() == ["CHAT alice ok"]


def test_line_at_exact_limit_is_accepted():
    pool = make_pool(limits=unit_limits(max_line=512))
    alice = named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.protocol.dataReceived(b"PING " + b"a" * 506 + b"\n")  # 512 bytes with \n
    alice.protocol.dataReceived(b"PING " + b"b" * 507 + b"\n")  # 513
    received = alice.received()
    assert received[0] == "PONG " + "a" * 506
    assert received[1].startswith("ERR line-too-long")


def test_line_dribbled_one_byte_at_a_time(pool):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    for byte in b"SAY slow and steady\r\n":
        alice.protocol.dataReceived(bytes([byte]))
    assert bob.received() == ["CHAT alice slow and steady"]


def test_flood_is_rate_limited_then_disconnected(clock):
    pool = make_pool(clock, limits=unit_limits(rate=5, burst=10))
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.received()
    clock.advance(10)  # refill the bucket used by login
    alice.send(*[f"SAY {i}" for i in range(30)])
    assert len(bob.received()) == 10
    errors = alice.received()
    assert len(errors) == 1 and errors[0].startswith("ERR rate-limited ")
    clock.advance(1)
    alice.send(*[f"SAY {i}" for i in range(40)])  # 20 + 35 drops within 10 s
    assert bob.received() == [f"CHAT alice {i}" for i in range(5)] + [
        "LEFT alice flooding"
    ]
    assert alice.received()[-1] == "BYE flooding"


def test_slow_reader_is_dropped_without_stalling_others():
    pool = make_pool(limits=unit_limits(max_pending=1000, rate=1000, burst=1000))
    alice = named(pool, "alice", "127.0.0.2")
    slow = named(pool, "slow", "127.0.0.3")
    carol = named(pool, "carol", "127.0.0.4")
    slow.transport.producer.pauseProducing()  # the kernel buffer is full
    for i in range(40):
        alice.send(f"SAY message number {i:03}")
        pool.clock.advance(0)  # each line its own turn, so its own round
    assert slow.protocol.session.state == "closed"
    assert slow.transport.disconnected  # aborted: a BYE would never be read
    assert len(slow.transport.value()) <= 1000 + 100  # writes before the pause
    lines = carol.received()
    assert lines[-1] == "CHAT alice message number 039"
    assert "LEFT slow too slow" in lines
    assert len([line for line in lines if line.startswith("CHAT")]) == 40


def test_admission_refusals(clock):
    pool = make_pool(clock, max_clients=1)
    named(pool, "alice", "127.0.0.2")
    full = connect(pool, host="127.0.0.3")
    assert full.received()[1:] == [
        "ERR server-full the server is full (1 users)",
        "BYE server-full",
    ]
    pool = make_pool(clock)
    named(pool, "alice", "127.0.0.2")
    twin = connect(pool, host="127.0.0.2")
    assert twin.received()[1].startswith("ERR duplicate-ip ")
    pool.room.banned_hosts.add("127.0.0.5")
    banned = connect(pool, host="127.0.0.5")
    assert banned.received()[1:] == [
        "ERR banned your address is banned from this server",
        "BYE banned",
    ]


def test_same_ip_allowed_when_asked():
    pool = make_pool(allow_same_ip=True)
    named(pool, "alice", "127.0.0.2")
    named(pool, "bob", "127.0.0.2")
    assert pool.room.names() == ["alice", "bob"]


def test_race_to_last_seat_is_decided_at_nick():
    pool = make_pool(max_clients=1)
    first, second = connect(pool, host="127.0.0.2"), connect(pool, host="127.0.0.3")
    first.received(), second.received()
    second.login()
    first.join("alice")
    second.send("NICK bob")
    assert second.received() == [
        "ERR server-full the server is full (1 users)",
        "BYE server-full",
    ]


def test_pending_logins_per_address_are_capped(pool):
    silent = [connect(pool, host="127.0.0.7", port=5000 + i) for i in range(10)]
    eleventh = connect(pool, host="127.0.0.7", port=6000)
    assert eleventh.received()[1].startswith("ERR auth-throttled ")
    assert connect(pool, host="127.0.0.8").received() == ["HELLO partypool/1 unit"]
    silent[0].lose()
    assert connect(pool, host="127.0.0.7", port=6001).received()[1:] == []


def test_exception_in_a_handler_ends_only_that_connection(pool, monkeypatch):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()

    def explode(argument: str) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(bob.protocol.dialect, "handle_ONLINE", explode)
    bob.send("ONLINE")
    assert bob.received() == ["BYE internal error"]
    assert alice.received() == ["LEFT bob lost"]
    alice.send("ONLINE")
    assert alice.received() == ["ONLINE 1 alice"]


def test_close_everyone_says_bye_to_named_and_unnamed(pool):
    alice = named(pool, "alice", "127.0.0.2")
    lurker = connect(pool, host="127.0.0.3")
    lurker.received()
    pool.close_everyone("server stopping")
    assert alice.received()[-1] == "BYE server stopping"
    assert lurker.received() == ["BYE server stopping"]


def connect_tls(pool, host: str) -> Peer:
    """Like helpers.connect, over a transport that says it is TLS."""
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    directlyProvides(transport, ISSLTransport)
    protocol = ChatFactory(pool).buildProtocol(None)
    protocol.makeConnection(transport)
    return Peer(protocol, transport)


def test_peer_that_never_finished_tls_is_aborted_not_waited_for(pool, clock):
    """A TLS peer still mid-handshake cannot read a BYE, and the TLS layer would
    hold its connection open waiting to send one: stopping the server, the
    login timeout and the keepalive abort it.  A refusal at connect waits
    for the handshake to end and is then said (ERR + BYE), for one such peer
    per address; another is aborted at once."""
    stuck = connect_tls(pool, "127.0.0.2")
    stuck.received()
    done = connect_tls(pool, "127.0.0.3")
    done.protocol.handshakeCompleted()
    done.received()
    pool.close_everyone("server stopping")
    assert stuck.transport.disconnected and stuck.received() == []
    assert done.received() == ["BYE server stopping"]
    assert done.transport.disconnecting and not done.transport.disconnected

    slow = connect_tls(pool, "127.0.0.4")
    slow.received()
    clock.advance(pool.limits.login_timeout)
    assert slow.transport.disconnected and slow.received() == []

    pool = make_pool(clock, limits=unit_limits(idle_ping=5, login_timeout=30))
    silent = connect_tls(pool, "127.0.0.5")
    clock.pump([5, 5])  # PING, then silence for another idle period
    assert silent.transport.disconnected
    hello, ping, *rest = silent.received()
    assert ping.startswith("PING ") and rest == []  # no BYE, and not held open

    full = make_pool(clock, max_clients=1)
    named(full, "alice", "127.0.0.6")
    refused = connect_tls(full, "127.0.0.7")
    assert refused.received()[1:] == []
    again = connect_tls(full, "127.0.0.7")
    assert again.transport.disconnected and again.received()[1:] == []
    refused.protocol.handshakeCompleted()
    refused.send("AUTH SCRAM-SHA-256 biwsbj1jaGF0LHI9YWJj")  # ignored: refused
    assert refused.received() == [
        "ERR server-full the server is full (1 users)",
        "BYE server-full",
    ]
    assert refused.transport.disconnecting and not refused.transport.disconnected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_lines_never_break_the_server(lines):
    """Whatever arrives, the server answers in well-formed lines or says BYE,
    and the other user only ever sees scrubbed text."""
    pool = make_pool(limits=unit_limits(rate=1000, burst=1000))
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    for line in lines:
        alice.protocol.dataReceived(line.replace(b"\n", b"") + b"\n")
    replies = alice.received()
    allowed = ("ERR ", "ONLINE ", "IP ", "PONG", "OK REQUEST ", "BYE ")
    assert all(reply.startswith(allowed) for reply in replies), replies
    assert "BYE internal error" not in replies
    if alice.protocol.session.state == "closed":
        assert replies[-1].startswith("BYE ")
    for seen in bob.received():
        assert seen.isprintable(), seen


def test_keepalive_keeps_client_that_answers_ping_at_once(clock):
    """A PONG sent the moment the PING arrives is an answer: the check that
    runs one idle period after the PING must not take it for silence."""
    pool = make_pool(clock, limits=unit_limits(idle_ping=2))
    bob = named(pool, "bob", "127.0.0.3")
    bob.received()
    pings = 0
    for _ in range(40):  # 10 s: five idle periods
        clock.advance(0.25)
        for line in bob.received():
            if line.startswith("PING "):
                pings += 1
                bob.send("PONG " + line[5:])
    assert pings >= 4
    assert bob.protocol.session.state == "chatting"


def test_overlong_lines_count_as_lines_for_flood_control(clock):
    """A stream of overlong lines is rate-limited and ends in BYE flooding,
    like any other flood."""
    pool = make_pool(clock, limits=unit_limits(max_line=512, rate=5, burst=10))
    alice = named(pool, "alice", "127.0.0.2")
    alice.received()
    for _ in range(80):
        alice.protocol.dataReceived(b"x" * 600 + b"\n")
    lines = alice.received()
    assert lines[-1] == "BYE flooding"
    assert sum(line.startswith("ERR line-too-long") for line in lines) <= 10


def test_parallel_logins_cannot_outrun_the_throttle(pool):
    """Challenges fetched before the address was refused are refused at
    AUTH-RESPONSE too, so ten parallel guesses cost five tries, not ten."""
    import scramp

    from tests.helpers import _b64, _unb64

    peers, clients = [], []
    for port in range(10):
        peer = connect(pool, host="127.0.0.9", port=7000 + port)
        peer.received()
        client = scramp.ScramClient(["SCRAM-SHA-256"], "chat", "wrong")
        peer.send("AUTH SCRAM-SHA-256 " + _b64(client.get_client_first()))
        client.set_server_first(_unb64(peer.received()[0].split(" ")[1]))
        peers.append(peer)
        clients.append(client)
    outcomes = []
    for peer, client in zip(peers, clients, strict=True):
        peer.send("AUTH-RESPONSE " + _b64(client.get_client_final()))
        outcomes.append(peer.received()[0].split(" ")[1])
    assert outcomes == ["auth-failed"] * 5 + ["auth-throttled"] * 5


# -- issue 12 ------------------------------------------------------------------

# A 24-letter name of four-byte letters (CJK Extension B), 96 bytes; NFKC
# keeps them (it would turn mathematical bold letters into ASCII).
WIDE_NAME = "".join(chr(0x20000 + i) for i in range(24))


@pytest.mark.parametrize("line", ["ſay hello", "ſAY hello", "quıt", "pıng", "onlıne"])
def test_verbs_in_other_alphabets_are_unknown_commands(pool, line):
    """``ſay`` is not SAY (Unicode upper-cases ſ to S); ``quıt`` does not quit."""
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.send(line)
    assert bob.received()[0].startswith("ERR unknown-command ")
    bob.send("PING still-here")
    assert bob.received() == ["PONG still-here"]
    assert alice.received() == []


@pytest.mark.parametrize(
    "mechanism", ["ſcram-sha-256", "SCRAM-ſHA-256", "scram-sha-256"]
)
def test_sasl_mechanism_names_match_in_ascii_only(pool, mechanism):
    peer = connect(pool)
    peer.received()
    peer.send(f"AUTH {mechanism} biwsbj1jaGF0LHI9YWJj")  # n,,n=chat,r=abc
    first = peer.received()[0]
    if mechanism.isascii():
        assert first.startswith("AUTH-CHALLENGE ")
    else:
        assert first == "ERR auth-failed wrong passkey or bad login"


def test_a_client_nonce_too_long_to_repeat_fails_the_login(pool):
    """The challenge repeats the client's nonce, base64 makes it a third
    longer: a long one would make the server send a line over the limit."""
    peer = connect(pool)
    peer.received()
    client_first = "n,,n=chat,r=" + "x" * 3030
    peer.send("AUTH SCRAM-SHA-256 " + base64.b64encode(client_first.encode()).decode())
    lines = peer.received()
    assert lines == ["ERR auth-failed wrong passkey or bad login", "BYE auth-failed"]


def test_say_is_refused_if_its_relayed_line_would_pass_the_limit(pool):
    """The issue's case: a 96-byte name plus a SAY that fits the limit relays
    a longer CHAT line; HISTORY adds more.  The SAY is refused whole."""
    wide = named(pool, WIDE_NAME, "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    wide.received()
    wide.send("SAY " + "a" * 4090)  # 4096 bytes with CRLF: a legal line
    assert wide.received()[0].startswith("ERR text-too-long ")
    assert bob.received() == []
    budget = 4096 - len(f"HISTORY {2**63 - 1} 0000-00-00T00:00:00.000Z CHAT ")
    budget -= len(WIDE_NAME.encode()) + len(" \r\n")
    wide.send("SAY " + "é" * (budget // 2))
    assert wide.received() == []
    [chat] = bob.received()
    assert len(chat.encode()) + 2 <= 4096


def test_request_is_refused_if_root_could_not_be_told_it_in_one_line():
    """``REQUESTED <id> <name> <text>`` to root must fit the limit too."""
    store = FakeStore()
    pool = make_pool(store=store, limits=unit_limits(max_line=512))
    wide = named(pool, WIDE_NAME, "127.0.0.2")
    wide.send("REQUEST " + "r" * 400)
    assert wide.received()[0].startswith("ERR text-too-long ")
    assert store.requests == []


def test_online_with_many_wide_names_is_split_within_the_limit():
    """The issue's 47 names of four-byte letters: ONLINE-PART lines, then
    ONLINE with the total, every name once."""
    pool = make_pool(max_clients=50, allow_same_ip=True)
    peers = [named(pool, chr(0x20100 + i) + WIDE_NAME[1:], "::1") for i in range(47)]
    peers[0].received()
    peers[0].send("ONLINE")
    lines = peers[0].received()
    assert len(lines) > 1
    assert all(len(line.encode()) + 2 <= 4096 for line in lines)
    assert lines[-1].startswith("ONLINE 47 ")
    names = [n for line in lines[:-1] for n in line.split(" ")[1:]]
    names += lines[-1].split(" ")[2:]
    assert sorted(names) == sorted(pool.room.names()) and len(names) == 47


def test_requests_per_day_are_limited_with_a_clear_error():
    store = FakeStore()
    pool = make_pool(store=store, limits=unit_limits(max_requests_per_day=2))
    alice = named(pool, "alice", "127.0.0.2")
    alice.send("REQUEST one", "REQUEST two", "REQUEST three")
    assert alice.received() == [
        "OK REQUEST 1",
        "OK REQUEST 2",
        "ERR request-failed at most 2 requests a day; not stored, try again later",
    ]
    assert len(store.requests) == 2


@pytest.mark.parametrize("blank", ["\u3164", "\u200b", "\u3164 \u200b", "\u2800"])
def test_invisible_text_is_empty_in_say_request_and_quit(pool, blank):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.send(f"SAY {blank}", f"REQUEST {blank}")
    assert [line.split(" ")[:2] for line in bob.received()] == [
        ["ERR", "bad-syntax"],
        ["ERR", "bad-syntax"],
    ]
    bob.send(f"QUIT {blank}")
    assert alice.received() == ["LEFT bob quit"]


def test_bidi_controls_never_reach_others(pool):
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.send("SAY \u200fabc\u202edef\u2067\u061c", "QUIT bye\u200e\u202e")
    assert alice.received() == ["CHAT bob abcdef", "LEFT bob quit: bye"]


@pytest.mark.parametrize("name", ["\u0410lice", "\u0430dmin", "r\u043e\u043et", "-"])
def test_nick_refuses_the_issues_lookalike_and_blank_names(pool, name):
    named(pool, "Alice", "127.0.0.2")
    bob = connect(pool, host="127.0.0.3")
    bob.received()
    assert bob.login()[0].startswith("AUTH-OK ")
    bob.send(f"NICK {name}")
    assert bob.received()[0].startswith("ERR nick-invalid ")
    bob.send("NICK \u0405\u0441\u043e\u0440\u0435")  # whole-script Cyrillic, alone
    assert bob.received() == ["OK NICK \u0405\u0441\u043e\u0440\u0435"]


def test_a_long_quit_reason_is_cut_to_fit_the_left_line():
    pool = make_pool(limits=unit_limits(max_line=512))
    wide = named(pool, WIDE_NAME, "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    wide.send("QUIT " + "\U0002a6d6" * 120)  # a 485-byte line
    [left] = bob.received()
    assert len(left.encode()) + 2 <= 512
    assert left.startswith(f"LEFT {WIDE_NAME} quit: \U0002a6d6")


def test_long_admin_output_lines_go_on_in_the_next_admin_out():
    pool = make_pool(root=True, limits=unit_limits(max_line=512))

    class Commands:
        def run(self, line: str) -> Deferred:
            return succeed(Result("é" * 600 + "\nok", 0))

    pool.root_commands = lambda peer, door: Commands()
    root = connect(pool)
    root.received()
    assert root.login(ROOT_PASSWORD, username="root")[0].startswith("AUTH-OK ")
    root.send("ADMIN list")
    lines = root.received()
    assert all(len(line.encode()) + 2 <= 512 for line in lines)
    assert lines[-2:] == ["ADMIN-OUT ok", "ADMIN-END 0"]
    assert "".join(line.removeprefix("ADMIN-OUT ") for line in lines[:-2]) == (
        "é" * 600
    )

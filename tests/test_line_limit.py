"""No line the server sends is longer than ``--max-line`` (issue 12, item 8).

A property test: whatever clients send (every verb, free text of wide and
invisible characters, in any length, private messages) and whatever the
administrator sends (notices, shutdown messages, over SSH or as root on the
chat port, with its ``ADMIN-OUT`` output and ``REQUESTED`` events), in a
room full of 96-byte names, and whatever an earlier run at the largest
limit stored (the history replayed by ``HISTORY``, requests and history
listed to root), every line any connection or member receives fits the
limit with its CRLF.
"""

from __future__ import annotations

import base64
import shlex

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from partypool.admin.commands import AdminCommands, Operator
from partypool.room import room as events
from partypool.room.history import Entry
from partypool.room.store import Request
from partypool.wire import VERBS
from tests.helpers import (
    ROOT_PASSWORD,
    FakeMember,
    FakeStore,
    Peer,
    connect,
    make_pool,
    unit_limits,
)

# Four-byte letters NFKC keeps (CJK Extension B), two-, three-byte and ASCII
# letters, spaces, invisible and blank characters, a control and an escape.
ALPHABET = st.sampled_from(
    ["\U00020000", "\U0002a6d6", "é", "中", "a", "Z", "1", " ", "\u3164", "\u200b"]
    + ["\u202e", "\U000e0041", "\x1b", "-", "_", '"', "'"]
)
# Free-text verbs half the time: they are where relayed lines grow.
VERB = st.one_of(
    st.sampled_from(["SAY", "REQUEST", "MSG"]),
    st.sampled_from([*VERBS, "HELLO", "say", "ſay", "ONLINE-PART"]),
)


@st.composite
def texts(draw: st.DrawFn, max_line: int) -> str:
    """Short hostile text, or text that brings its line near ``max_line``
    bytes, where a relayed form with a longer head would pass it."""
    if draw(st.booleans()):
        return draw(st.text(ALPHABET, max_size=40))
    char = draw(st.sampled_from(["\U00020000", "é", "中", "a"]))
    size = max_line - draw(st.integers(0, 150))
    return char * max(1, size // len(char.encode()))


class StoredBefore(FakeStore):
    """Requests an earlier run stored, when ``--max-line`` was 4096."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.stored = [
            Request(i, "2026-01-01T00:00:00+00:00", CROWD[2], "127.0.0.9", text)
            for i, text in enumerate(texts, 1)
        ]

    def recent_requests(self, limit: int) -> defer.Deferred:
        return defer.succeed(self.stored[-limit:][::-1])


@st.composite
def stored_before(draw: st.DrawFn) -> tuple[list[Entry], list[str]]:
    """History and requests an earlier run at ``--max-line 4096`` kept."""
    kept = draw(st.lists(st.tuples(st.booleans(), texts(4096)), max_size=4))
    history = [
        Entry(i, 1e9, events.chat(CROWD[3], t) if chat else events.notice(t))
        for i, (chat, t) in enumerate(kept, 1)
    ]
    return history, draw(st.lists(texts(4096), max_size=2))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list, list, int, tuple]:
    max_line = draw(st.sampled_from([512, 700, 4096]))
    text = texts(max_line)
    admin = st.one_of(
        text.map(lambda t: f"send -all {shlex.quote(t)}"),
        st.tuples(st.integers(0, 10**9), text).map(
            lambda nt: f"close-server -t {nt[0]} -m {shlex.quote(nt[1])}"
        ),
        st.sampled_from(["requests", "list-conn", "mutes", "stats"]),
    )
    said = draw(
        st.lists(
            st.one_of(
                st.tuples(st.integers(0, 2), VERB, text),
                st.tuples(st.just(3), st.just("ADMIN"), admin),  # root
            ),
            max_size=10,
        )
    )
    typed = draw(st.lists(admin, max_size=3))
    return max_line, said, typed, draw(st.integers(1, 3100)), draw(stored_before())


# Names for the crowd: 24 four-byte letters, each name different.
CROWD = ["".join(chr(0x20000 + 24 * i + j) for j in range(24)) for i in range(45)]


def _lines(data: bytes) -> list[bytes]:
    assert data == b"" or data.endswith(b"\r\n")
    return [line + b"\r\n" for line in data.split(b"\r\n")[:-1]]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_no_server_line_passes_max_line(scenario):
    max_line, said, typed, nonce, (history, requests) = scenario
    pool = make_pool(
        root=True,
        store=StoredBefore(requests),
        history_kept=(history, len(history)),
        max_clients=60,
        allow_same_ip=True,
        limits=unit_limits(max_line=max_line, rate=1e9, burst=10**6),
    )
    crowd = [FakeMember("127.0.0.9") for _ in CROWD]
    for member, name in zip(crowd, CROWD, strict=True):
        pool.room.join(member, name)
    talkers: list[Peer] = []
    for host, name in (("127.0.0.2", CROWD[0][::-1]), ("127.0.0.3", None)):
        peer = connect(pool, host=host)
        peer.received()  # HELLO
        assert peer.login()[0].startswith("AUTH-OK ")
        if name is not None:
            peer.send(f"NICK {name}")
        talkers.append(peer)
    stranger = connect(pool, host="127.0.0.4")  # still logging in
    client_first = base64.b64encode(f"n,,n=chat,r={'x' * nonce}".encode()).decode()
    stranger.send(f"AUTH SCRAM-SHA-256 {client_first}")
    talkers.append(stranger)
    root = connect(pool, host="127.0.0.5")
    root.received()
    assert root.login(ROOT_PASSWORD, username="root")[0].startswith("AUTH-OK ")
    root.send("NICK root")
    talkers.append(root)
    sent = [peer.transport.value() for peer in talkers]

    commands = AdminCommands(pool, Operator("password", "127.0.0.1:1"))
    for who, verb, text in said:
        if verb == "MSG":
            text = f"{CROWD[1]} {text}"
        if not talkers[who].protocol.session.closed:
            talkers[who].send(f"{verb} {text}".rstrip(" "))
    for line in typed:
        commands.run(line)
    for peer in talkers:  # what was stored before, replayed and listed
        if not peer.protocol.session.closed:
            peer.send("HISTORY 200", "ADMIN requests", "ADMIN history -n 200")
    pool.clock.advance(10**9 + 1)  # every countdown ends: SHUTDOWN…, BYE

    for peer, before in zip(talkers, sent, strict=True):
        for line in _lines(before + peer.transport.value()):
            assert len(line) <= max_line, line[:80]
    for member in crowd:
        for event in member.events:
            assert len(event.wire) <= max_line, event.wire[:80]

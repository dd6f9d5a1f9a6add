"""No line the IRC gateway sends is longer than 512 bytes (RFC 1459/2812;
IRCv3 tags aside): issue 12's kind 8 on the IRC door.

A property test: whatever IRC clients send, before and after registration
(every command the gateway answers and a few it does not, with free text of
four-byte letters, characters NFKC makes longer, look-alikes and controls, up
to and past the line limit), whatever root runs and whatever a v1 user says
or quits with, under a server name that is short, long, or all four-byte
letters, in a room full of 96-byte names, every line any IRC client receives
fits 512 bytes with its CRLF, and no session ends in an internal error (the
gateway's encoder refuses rather than send a line it cannot fit).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partypool.doors.irc_wire import MESSAGE_MAX
from tests.helpers import FakeMember, make_pool, unit_limits
from tests.test_irc_gateway import irc_connect, irc_named, irc_root, v1_named

# Four-byte letters, a character NFKC turns into four (``㌀``, 3 bytes, is
# ``アパート``, 12), look-alikes of ASCII letters, decomposed Hangul (three
# characters NFKC makes one), IRC's separators, controls and CTCP's marker.
ALPHABET = st.sampled_from(
    ["\U00020000", "\U00010400", "\u3300", "ﬆ", "ſ", "ı", "\u1100\u1161\u11a8"]
    + ["x", "é", " ", ":", ",", "#", "\x1b", "\u202e", "\x01", "\u3000"]
)
# Names for the crowd: 24 four-byte letters, each name different.
CROWD = ["".join(chr(0x20000 + 24 * i + j) for j in range(24)) for i in range(12)]
# What clients send; each {} is free text or a member's name.
TEMPLATES = [
    "PRIVMSG #party :{}",
    "PRIVMSG {} :{}",
    "NOTICE #party :{}",
    "PRIVMSG #party :\x01ACTION {}\x01",
    "PRIVMSG partypool :{}",
    "PART #party :{}",
    "QUIT :{}",
    "PING {}",
    "PING :{}",
    "ISON {} {} {} {} {} {} {} {}",
    "USERHOST {} {} {} {} {}",
    "WHO {}",
    "WHOIS {}",
    "NAMES {}",
    "TOPIC {} :{}",
    "MODE {} {}",
    "LIST {}",
    "JOIN {}",
    "NICK {}",
    "USER {} 0 * :{}",
    "PASS :{}",
    "AWAY :{}",
    "KICK #party {} :{}",
    "KILL {} :{}",
    "CAP REQ :{}",
    "CAP {}",
    "CAP LS {}",
    "AUTHENTICATE {}",
    "{} {}",
]


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Short hostile text, a member's name (as sent or as ``㌀`` spells it),
    or one character repeated up to about a line."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return "".join(draw(st.lists(ALPHABET, max_size=40)))
    if kind == 1:
        return draw(st.sampled_from(CROWD + ["\u3300" * 6, "root", "alice"]))
    char = draw(st.sampled_from(["\U00010400", "\u3300", "x", "é"]))
    return char * draw(st.integers(1, 520 // len(char.encode())))


@st.composite
def lines(draw: st.DrawFn) -> str:
    """One client line, cut to a size near the 512-byte limit or past it."""
    template = draw(st.sampled_from(TEMPLATES))
    line = template.format(*(draw(texts()) for _ in range(template.count("{}"))))
    size = draw(st.sampled_from([510, 510, 400, 600]))
    return line.encode()[:size].decode(errors="ignore")  # between characters


SCENARIOS = st.tuples(
    st.sampled_from(["unit", "Tea Room " + "x" * 600, "\U00010400" * 1000]),
    st.lists(st.tuples(st.integers(0, 2), lines()), max_size=12),
    st.lists(texts(), max_size=3),  # a v1 user's messages; then it quits
    st.booleans(),  # the v1 user quits with the last text as its reason
)


def _messages(data: bytes) -> list[bytes]:
    """Each line of ``data`` without its tags, CRLF included."""
    assert data == b"" or data.endswith(b"\r\n")
    lines = [line + b"\r\n" for line in data.split(b"\r\n")[:-1]]
    return [line.partition(b" ")[2] if line[:1] == b"@" else line for line in lines]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(SCENARIOS)
def test_no_irc_line_passes_512_bytes(scenario):
    server_name, said, v1_said, v1_quits = scenario
    pool = make_pool(
        root=True,
        max_clients=60,
        allow_same_ip=True,
        limits=unit_limits(rate=1e9, burst=10**6),
    )
    pool.server_name = server_name
    crowd = [FakeMember("127.0.0.9") for _ in CROWD]
    for member, name in zip(crowd, CROWD, strict=True):
        pool.room.join(member, name)
    watcher = irc_connect(pool, host="127.0.0.2")  # every tag, and its echoes
    watcher.send("CAP LS 302", "CAP REQ :batch echo-message message-tags server-time")
    watcher.register("\U00010400" * 24)
    alice = irc_named(pool, "alice", "127.0.0.3")
    stranger = irc_connect(pool, host="127.0.0.4")  # never registers
    root = irc_root(pool)
    talkers = [alice, stranger, root]
    v1 = v1_named(pool, CROWD[0][::-1], "127.0.0.5")

    for who, line in said:
        talkers[who].send(line.encode())
    for text in v1_said:
        v1.send(f"SAY {text}")
    if v1_quits:
        v1.send(f"QUIT {v1_said[-1] if v1_said else ''}")
    pool.clock.advance(0)

    for peer in (watcher, *talkers):
        for message in _messages(peer.transport.value()):
            assert len(message) <= MESSAGE_MAX, message[:80]
            assert b"internal error" not in message, message

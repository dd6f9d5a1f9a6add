"""The room without sockets: names, admission, broadcast and removal."""

import pytest

from partypool.room import room as events
from partypool.room.room import Room
from partypool.wire import WireError
from tests.helpers import FakeMember


def test_join_announces_to_others_only():
    room = Room()
    alice, bob = FakeMember("127.0.0.2"), FakeMember("127.0.0.3")
    assert room.join(alice, "alice") == "alice"
    room.join(bob, "bob")
    assert alice.lines() == ["JOINED bob"]
    assert bob.lines() == []
    assert room.stats.peak == 2


def test_broadcast_encodes_once_and_counts():
    room = Room()
    members = [FakeMember(f"127.0.0.{i}") for i in range(2, 6)]
    for i, member in enumerate(members):
        room.join(member, f"m{i}")
    event = events.chat("m0", "hi")
    assert room.broadcast(event, but=members[0]) == 3
    assert all(m.events[-1] is event for m in members[1:])
    assert room.stats.deliveries >= 3


def test_leave_is_idempotent_and_frees_name_and_address():
    room = Room()
    alice, bob = FakeMember("127.0.0.2"), FakeMember("127.0.0.3")
    room.join(alice, "alice")
    room.join(bob, "bob")
    assert room.leave(alice, "quit")
    assert not room.leave(alice, "quit")
    assert bob.lines()[-1] == "LEFT alice quit"
    assert room.admission_error("127.0.0.2") is None
    room.join(FakeMember("127.0.0.2"), "ALICE")


def test_remove_tells_others_then_disconnects():
    room = Room()
    alice, bob = FakeMember("127.0.0.2"), FakeMember("127.0.0.3")
    room.join(alice, "alice")
    room.join(bob, "bob")
    room.remove(bob, "removed by admin")
    assert bob.goodbye == "removed by admin"
    assert alice.lines()[-1] == "LEFT bob removed by admin"
    assert room.names() == ["alice"]


@pytest.mark.parametrize(
    "setup, code",
    [
        (lambda r: r.banned_names.add("bob"), "banned"),
        (lambda r: r.banned_hosts.add("127.0.0.3"), "banned"),
        (lambda r: r.join(FakeMember("127.0.0.9"), "BOB"), "nick-taken"),
        (lambda r: r.join(FakeMember("127.0.0.3"), "other"), "duplicate-ip"),
    ],
)
def test_join_refusals(setup, code):
    room = Room()
    setup(room)
    with pytest.raises(WireError) as e:
        room.join(FakeMember("127.0.0.3"), "bob")
    assert e.value.code == code


def test_full_room_refuses_at_admission_and_join():
    room = Room(max_members=1)
    room.join(FakeMember("127.0.0.2"), "alice")
    assert room.admission_error("127.0.0.3").code == "server-full"
    with pytest.raises(WireError, match="server-full"):
        room.join(FakeMember("127.0.0.3"), "bob")


def test_lookup_by_name_and_host_and_sorted_names():
    room = Room(allow_same_ip=True)
    zed, amy, bea = (FakeMember("127.0.0.2") for _ in range(3))
    room.join(zed, "zed")
    room.join(amy, "Amy")
    room.join(bea, "bea")
    assert room.names() == ["Amy", "bea", "zed"]
    assert room.by_name("AMY") is amy
    assert set(room.by_host("127.0.0.2")) == {zed, amy, bea}


def test_a_member_that_fails_is_dropped_and_the_rest_still_hear():
    """An exception in one delivery must not cost anyone else the message."""

    class Broken(FakeMember):
        def deliver(self, event):
            raise RuntimeError("bug")

    room = Room()
    alice, broken, carol = (
        FakeMember("127.0.0.2"),
        Broken("127.0.0.3"),
        FakeMember("127.0.0.4"),
    )
    room.join(alice, "alice")
    room.join(broken, "broken")
    room.join(carol, "carol")
    assert room.broadcast(events.chat("alice", "hi"), but=alice) == 1
    assert sorted(carol.lines()[-2:]) == ["CHAT alice hi", "LEFT broken lost"]
    assert broken.goodbye == "internal error"
    assert room.names() == ["alice", "carol"]


def test_notices_to_chosen_members_count_in_the_stats():
    room = Room()
    alice, bob = FakeMember("127.0.0.2"), FakeMember("127.0.0.3")
    room.join(alice, "alice")
    room.join(bob, "bob")
    before = room.stats.deliveries
    room.send_to([bob], events.notice("psst"))
    assert bob.lines()[-1] == "NOTICE psst"
    assert room.stats.deliveries == before + 1
    assert room.stats.bytes_relayed >= len(b"NOTICE psst\r\n")


def test_ipv4_clients_of_a_dual_stack_listener_are_named_by_ipv4():
    """So `ban -ip 127.0.0.9` and one-session-per-address hold on tcp6 too."""
    from twisted.internet.address import IPv4Address, IPv6Address

    from partypool.room.pool import host_and_peer

    assert host_and_peer(IPv6Address("TCP", "::ffff:127.0.0.9", 4000)) == (
        "127.0.0.9",
        "127.0.0.9:4000",
    )
    assert host_and_peer(IPv6Address("TCP", "::1", 4000)) == ("::1", "::1:4000")
    assert host_and_peer(IPv4Address("TCP", "127.0.0.2", 5)) == (
        "127.0.0.2",
        "127.0.0.2:5",
    )


def test_one_session_per_address_means_per_ipv6_64():
    """A second address of the same /64 is the same address; the next /64
    and IPv4 neighbours are not."""
    room = Room()
    room.join(FakeMember("2001:db8::1"), "alice")
    assert room.admission_error("2001:db8::2").code == "duplicate-ip"
    with pytest.raises(WireError, match="already a session"):
        room.join(FakeMember("2001:db8::ffff:1"), "bob")
    assert room.admission_error("2001:db8:0:1::1") is None
    room.join(FakeMember("192.0.2.1"), "carol")
    assert room.admission_error("192.0.2.2") is None
    room.leave(room.by_name("alice"), "quit")
    assert room.admission_error("2001:db8::2") is None


def test_banned_networks_refuse_every_address_in_them():
    room = Room()
    room.banned_hosts.add("10.0.0.0/8")
    room.banned_hosts.add("2001:db8::7")  # bans the /64
    for host in ("10.1.2.3", "10.255.255.255", "2001:db8::1", "2001:db8::7"):
        assert room.admission_error(host).code == "banned", host
    for host in ("11.0.0.1", "2001:db8:0:1::7"):
        assert room.admission_error(host) is None, host


# -- issue 12: look-alike names ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "\u0410lice",  # Cyrillic А + Latin lice
        "Al\u0456ce",  # Cyrillic і
        "\u0391lice",  # Greek Α
        "\u0430dmin",  # the аdmin
        "r\u043e\u043et",  # the rооt
        "paypa\u04cf",  # Cyrillic palochka
        "abc\u65e5",  # Latin + Han
        "a1\u0661",  # two kinds of digits
    ],
)
def test_names_that_mix_scripts_are_refused(name):
    room = Room()
    with pytest.raises(WireError) as e:
        room.join(FakeMember("127.0.0.2"), name)
    assert e.value.code == "nick-invalid"


@pytest.mark.parametrize(
    "name", ["Zoë", "Алиса", "名前", "日本語かな", "ωμέγα", "x_1.y-2", "ΑΒΓ"]
)
def test_single_script_names_are_welcome(name):
    room = Room()
    assert room.join(FakeMember("127.0.0.2"), name) == name


@pytest.mark.parametrize(
    "present, lookalike",
    [
        ("scope", "\u0455\u0441\u043e\u0440\u0435"),  # all Cyrillic ѕсоре
        ("Alice", "A\u217cice"),  # ⅼ ROMAN NUMERAL FIFTY (NFKC: l)
        ("lan", "Ian"),  # capital I and small l
        ("Ian", "lan"),
        ("bob", "B0B"),  # digit zero and letter O, and case
        ("Alice", "ALlCE"),  # small l among capitals, like ALICE's I
        ("corn", "com"),  # rn and m
        ("\u0441\u043e\u0440\u0435", "cope"),  # the other way round
    ],
)
def test_a_name_that_looks_like_a_present_one_is_taken(present, lookalike):
    room = Room(allow_same_ip=True)
    room.join(FakeMember("127.0.0.2"), present)
    with pytest.raises(WireError) as e:
        room.join(FakeMember("127.0.0.2"), lookalike)
    assert e.value.code == "nick-taken"
    assert present in e.value.text


def test_a_lookalike_name_is_free_again_once_its_twin_leaves():
    room = Room(allow_same_ip=True)
    scope = FakeMember("127.0.0.2")
    room.join(scope, "scope")
    room.leave(scope, "quit")
    assert room.join(FakeMember("127.0.0.2"), "\u0455\u0441\u043e\u0440\u0435")
    assert room.names() == ["\u0455\u0441\u043e\u0440\u0435"]


@pytest.mark.parametrize(
    "name",
    [
        "adrnin",  # rn for m
        "r00t",  # zeros for o
        "ROOT",
        "\u0455\u0435\u0433\u0475\u0435\u0433".replace("\u0475", "v"),  # mixed anyway
        "PartyPooI",  # capital I for l
        "5erver".replace("5", "s"),
    ],
)
def test_names_that_look_reserved_are_refused(name):
    room = Room()
    with pytest.raises(WireError) as e:
        room.join(FakeMember("127.0.0.2"), name)
    assert e.value.code == "nick-invalid"


def test_a_lookalike_of_a_banned_name_is_banned():
    room = Room()
    room.banned_names.add("mallory")
    with pytest.raises(WireError) as e:
        room.join(FakeMember("127.0.0.2"), "MaIlory")  # capital I for l
    assert e.value.code == "banned"


def test_an_event_is_encoded_once_per_dialect():
    """A door with its own dialect formats an event once, however many
    members it reaches; another dialect gets its own form."""
    calls = []

    def loud(event: events.Event) -> bytes:
        calls.append(event.verb)
        return event.verb.lower().encode() + b"!"

    def quiet(event: events.Event) -> bytes:
        return b"."

    event = events.chat("m0", "hi")
    assert [event.encoded(loud) for _ in range(3)] == [b"chat!"] * 3
    assert event.encoded(quiet) == b"." and calls == ["CHAT"]
    assert event.wire == b"CHAT m0 hi\r\n"

"""`Unauthenticated`: the connections not logged in yet, counted for every
door by address group, with the per-address and server-wide caps."""

from __future__ import annotations

from partypool.room.pool import MAKE_ROOM, Unauthenticated
from tests.helpers import FakeMember


def test_an_ipv6_64_shares_one_per_address_cap():
    table = Unauthenticated(per_address=3, total=100)
    for i in range(3):
        assert table.add(f"2001:db8::{i + 1}", FakeMember("x"))
    assert not table.has_room("2001:db8::ffff")
    assert not table.add("2001:db8::ffff", FakeMember("x"))
    assert table.add("2001:db8:0:1::1", FakeMember("x"))  # the next /64
    assert len(table) == 4 and table.count("2001:db8::9") == 3


def test_one_refused_connection_per_group_may_wait_to_be_told():
    """Past its cap a group may still hold one connection that waits to read
    its refusal; a second is closed at once."""
    table = Unauthenticated(per_address=1, total=100)
    assert table.add("192.0.2.1", FakeMember("192.0.2.1"))
    refused = FakeMember("192.0.2.1")
    assert table.add("192.0.2.1", refused, refused=True)
    assert not table.add("192.0.2.1", FakeMember("192.0.2.1"), refused=True)
    table.discard(refused)
    table.discard(refused)  # twice is harmless
    assert table.add("192.0.2.1", FakeMember("192.0.2.1"), refused=True)


def test_past_the_total_the_oldest_of_the_biggest_group_makes_room():
    table = Unauthenticated(per_address=10, total=5)
    crowd = [FakeMember("198.51.100.1") for _ in range(3)]
    for member in crowd:
        table.add(member.host, member)
    others = [FakeMember("192.0.2.1"), FakeMember("2001:db8::1")]
    for member in others:
        table.add(member.host, member)
    newcomer = FakeMember("203.0.113.1")
    assert table.add(newcomer.host, newcomer)
    assert [m.goodbye for m in crowd] == [MAKE_ROOM, None, None]
    assert [m.goodbye for m in others] == [None, None]
    assert len(table) == 5 and table.count("198.51.100.1") == 2
    table.discard(crowd[0])  # the evicted one closing later changes nothing
    assert len(table) == 5

"""`Unauthenticated`: a port's connections not logged in yet, counted by
address group, with the per-address and the port-wide caps."""

from __future__ import annotations

from partypool.room.pool import MAKE_ROOM, Unauthenticated
from tests.helpers import FakeMember


def test_an_ipv6_64_shares_one_per_address_cap():
    table = Unauthenticated(per_address=3, total=100)
    for i in range(3):
        assert table.admit(FakeMember("x"), f"2001:db8::{i + 1}") is None
    assert table.admit(FakeMember("x"), "2001:db8::ffff") == (
        "3 connections from it not logged in"
    )
    assert table.admit(FakeMember("x"), "2001:db8:0:1::1") is None  # the next /64
    assert len(table) == 4 and table.count("2001:db8::9") == 3


def test_one_refused_connection_per_group_may_wait_to_be_told():
    """Past its cap a group may still hold one connection that waits to read
    its refusal; a second is closed at once."""
    table = Unauthenticated(per_address=1, total=100)
    assert table.admit(FakeMember("192.0.2.1"), "192.0.2.1") is None
    refused = FakeMember("192.0.2.1")
    assert table.admit(refused, "192.0.2.1", refused=True) is None
    assert table.admit(FakeMember("192.0.2.1"), "192.0.2.1", refused=True)
    table.release(refused)
    table.release(refused)  # twice is harmless
    assert table.admit(FakeMember("192.0.2.1"), "192.0.2.1", refused=True) is None


def test_past_the_total_the_oldest_of_the_biggest_group_makes_room():
    """A newcomer closes the oldest connection of the address holding the
    most, not the oldest of all: a crowd from one address goes first."""
    table = Unauthenticated(per_address=10, total=5)
    crowd = [FakeMember("198.51.100.1") for _ in range(3)]
    others = [FakeMember("192.0.2.1"), FakeMember("2001:db8::1")]
    for member in crowd + others:
        table.admit(member, member.host)
    newcomer = FakeMember("203.0.113.1")
    assert table.admit(newcomer, newcomer.host) is None
    assert [m.goodbye for m in crowd] == [MAKE_ROOM, None, None]
    assert [m.goodbye for m in others] == [None, None]
    assert len(table) == 5 and table.count("198.51.100.1") == 2
    table.release(crowd[0])  # the closed one going later changes nothing
    assert len(table) == 5

"""Address groups and banned networks: what every per-address rule counts by."""

from __future__ import annotations

import ipaddress

import pytest

from partypool.room.addresses import (
    BanList,
    address_group,
    ban_network,
    network_text,
)


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("203.0.113.7", "203.0.113.7"),  # IPv4: the address itself
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1:2", "2001:db8::/64"),  # privacy address, same /64
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),  # the next /64 is another
        ("fe80::1%eth0", "fe80::/64"),  # zone ids do not split a group
        ("::1", "::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # mapped IPv4 is IPv4
        ("/run/partypool.sock", "/run/partypool.sock"),  # not an address
    ],
)
def test_ipv6_peers_are_grouped_by_their_64(host, group):
    assert address_group(host) == group


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),  # host bits cleared
        ("2001:db8::/64", "2001:db8::/64"),
        ("2001:db8::5", "2001:db8::/64"),  # an IPv6 address bans its /64
        ("2001:db8::/120", "2001:db8::/64"),
        ("2001:db8::/48", "2001:db8::/48"),  # wider stays wider
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),  # as connections are named
        ("::ffff:192.0.2.9", "192.0.2.9/32"),
        ("[2001:db8::9]", "2001:db8::/64"),  # brackets, as admins type them
        (" 192.0.2.0/24 ", "192.0.2.0/24"),
    ],
)
def test_ban_network_accepts_addresses_and_cidrs(text, network):
    assert ban_network(text) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not an IP address"),
        ("example.com", "not an IP address"),
        ("1.2.3", "not an IP address"),
        ("10.0.0.0/33", "not an IP address or network"),
        ("2001:db8::/129", "not an IP address or network"),
        ("::/x", "not an IP address or network"),
        ("224.0.0.1", "never the address of a client"),
        ("0.0.0.0", "never the address of a client"),
        ("ff02::/16", "holds no client addresses"),
        ("239.0.0.0/8", "holds no client addresses"),
        # Checked after the mapping and the clearing of host bits: a network
        # of one address is that address, a mapped one is IPv4 (attack II, 12).
        ("0.0.0.0/32", "0.0.0.0 is never the address of a client"),
        ("255.255.255.255/32", "never the address of a client"),
        ("224.0.0.1/32", "never the address of a client"),
        ("::/128", "never the address of a client"),
        ("ff02::1/128", "never the address of a client"),
        ("::ffff:224.0.0.1/128", "224.0.0.1 is never the address of a client"),
        ("::ffff:0.0.0.0/128", "never the address of a client"),
        ("::ffff:255.255.255.255/128", "never the address of a client"),
        ("::ffff:224.0.0.0/100", "224.0.0.0/4 holds no client addresses"),
        ("::ffff:239.1.2.3/120", "239.1.2.0/24 holds no client addresses"),
        ("224.0.0.1/31", "224.0.0.0/31 holds no client addresses"),
    ],
)
def test_ban_network_refuses_what_can_never_match(text, why):
    with pytest.raises(ValueError, match=why):
        ban_network(text)


def test_network_text_writes_single_ipv4_addresses_bare():
    assert network_text(ban_network("192.0.2.9")) == "192.0.2.9"
    assert network_text(ban_network("192.0.2.0/24")) == "192.0.2.0/24"
    assert network_text(ban_network("2001:db8::9")) == "2001:db8::/64"


def test_ban_list_covers_every_address_of_a_network():
    bans = BanList()
    bans.add("2001:db8::/64")
    bans.add("198.51.100.0/24")
    bans.add("192.0.2.9")
    bans.add("2001:db8:1::/48")
    for host in (
        "2001:db8::1",
        "2001:db8::abcd:1234",
        "198.51.100.200",
        "192.0.2.9",
        "2001:db8:1:ff::1",
    ):
        assert host in bans, host
    for host in ("2001:db8:0:1::1", "198.51.101.1", "192.0.2.10", "::1", "x"):
        assert host not in bans, host
    assert len(bans) == 4
    bans.discard("2001:db8::/64")
    bans.discard("192.0.2.0/24")  # never banned: nothing happens
    assert "2001:db8::1" not in bans and len(bans) == 3

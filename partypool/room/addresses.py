"""Client addresses as the rules see them: one spelling, groups, banned networks.

One IPv6 subscriber usually holds a whole /64 (SLAAC, privacy addresses), so
rules that count or refuse "an address" — the login throttle, the cap on
logins in progress, one session per address, bans, mutes, the daily request
limit (in the store) — count an IPv6 peer by its /64, and an IPv4 peer by
its own address.  `normal_address` is
the one spelling of an address (connections are named by it, and what the
administrator types is read by it); `address_group` names the unit the
rules count; `BanList` matches a peer against banned networks (single
addresses and CIDRs such as ``2001:db8::/64`` or ``203.0.113.0/24``).
"""

from __future__ import annotations

import functools
import ipaddress

import attrs

from partypool.wire import scrub

IPV6_GROUP_PREFIX = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normal_address(text: str) -> str:
    """The one spelling of an IP address that rules compare: raise ValueError
    for text that names no address a client could connect from.

    Every rule keyed by address (bans, one session per address, throttles,
    the admin commands' ``-ip``) goes through here, for connections and for
    what the administrator types alike: an IPv4 client of a dual-stack
    listener (``::ffff:a.b.c.d``) is its IPv4 address, IPv6 is in its
    compressed lower-case form (``0:0::1`` is ``::1``), a zone id
    (``fe80::1%eth0``) is dropped (it names our interface, not the peer),
    and ``[…]`` brackets are allowed.  The unspecified address, multicast
    and the IPv4 broadcast address can never be a peer, so they are refused.
    """
    try:
        address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        raise ValueError(f"not an IP address: {scrub(text)[:60]}") from None
    if address.version == 6:
        address = address.ipv4_mapped or ipaddress.IPv6Address(address.packed)
    if (
        address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise ValueError(f"{address} is never the address of a client")
    return str(address)


@functools.lru_cache(maxsize=4096)
def address_group(host: str) -> str:
    """The unit per-address rules count ``host`` by: an IPv4 address itself
    (IPv4-mapped IPv6 too, in case a host was not `normal_address`-ed, as
    in rows an older server stored), an IPv6 address's /64
    (``2001:db8::/64``); anything else (a UNIX socket path) unchanged."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/{IPV6_GROUP_PREFIX}", strict=False))


def ban_network(text: str) -> Network:
    """The network a ``ban -ip`` value covers, or ValueError saying why not.

    An address (`normal_address`: the form connections are named by) or a
    CIDR; host bits are cleared (``10.1.2.3/8`` is ``10.0.0.0/8``), and
    IPv4-mapped IPv6 (``::ffff:10.0.0.0/104``) becomes the IPv4 network, as
    connections are named.  Only then is it checked, so that no spelling
    gets past: a network of one address (``/32``, ``/128``) is that address,
    refused as `normal_address` refuses it (``0.0.0.0/32``,
    ``::ffff:224.0.0.1/128``), and a network of multicast addresses holds no
    client, so it is refused too.  IPv6 is banned by /64 at the least, as it
    is counted.
    """
    text = text.strip()
    if "/" in text:
        network = _cidr(text)
        if network.num_addresses > 1:
            if network.is_multicast:
                raise ValueError(f"{network} holds no client addresses")
            return _at_least_a_group(network)
        text = str(network.network_address)
    return _at_least_a_group(ipaddress.ip_network(normal_address(text)))


def _cidr(text: str) -> Network:
    """``text`` as a network, host bits cleared, IPv4-mapped IPv6 as IPv4."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {scrub(text)[:60]}") from None
    mapped = network.network_address.ipv4_mapped if network.version == 6 else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def _at_least_a_group(network: Network) -> Network:
    """An IPv6 network at least as wide as the /64 peers are counted by."""
    if network.version == 6 and network.prefixlen > IPV6_GROUP_PREFIX:
        return network.supernet(new_prefix=IPV6_GROUP_PREFIX)
    return network


def in_network(host: str, network: Network) -> bool:
    """Whether ``host`` (an address; anything else is in no network) is in
    ``network``."""
    try:
        return ipaddress.ip_address(host.partition("%")[0]) in network
    except (ValueError, TypeError):
        return False


def network_text(network: Network) -> str:
    """How a banned network is written (stored, listed): a single IPv4
    address without ``/32``, anything wider as a CIDR."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


@attrs.define
class BanList:
    """Banned networks; ``host in bans`` says whether a peer is covered.

    Kept by prefix length, so a lookup costs one set probe per distinct
    length, however many bans there are.
    """

    _by_prefix: dict[tuple[int, int], set[Network]] = attrs.Factory(dict)

    def add(self, network: Network | str) -> Network:
        network = _network(network)
        self._by_prefix.setdefault((network.version, network.prefixlen), set()).add(
            network
        )
        return network

    def discard(self, network: Network | str) -> None:
        network = _network(network)
        key = (network.version, network.prefixlen)
        bans = self._by_prefix.get(key, set())
        bans.discard(network)
        if not bans:
            self._by_prefix.pop(key, None)

    def covers(self, host: str) -> bool:
        """Whether ``host`` (an address; anything else is never banned) is in a
        banned network."""
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        for (version, prefix), bans in self._by_prefix.items():
            if version == address.version:
                network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
                if network in bans:
                    return True
        return False

    __contains__ = covers

    def __len__(self) -> int:
        return sum(len(bans) for bans in self._by_prefix.values())


def _network(value: Network | str) -> Network:
    return value if not isinstance(value, str) else ban_network(value)

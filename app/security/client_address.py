"""Which end user a request comes from, for per-client rate limits.

The address is the socket peer's, unless that peer is a trusted proxy (PARLEY_TRUSTED_PROXIES, CIDRs):
then X-Forwarded-For is read from the right, skipping further trusted proxies, and the first address
that is not one is the client. Hops to the left of it were written by the client itself and can be
forged, so they are never used. With no trusted proxies (the default) X-Forwarded-For is ignored.

IPv6 clients are counted per /64: one subscriber usually holds a whole /64 and could otherwise
rotate through its addresses to escape a per-address limit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_CLIENT_PREFIX = 64
UNKNOWN = "unknown"  # no peer address at all (an ASGI server on a Unix socket)


def parse_networks(text: str) -> tuple[Network, ...]:
    """"10.0.0.0/8, 192.0.2.7" -> networks (a bare address is a /32 or /128). ValueError names a bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {entry!r}") from None
    return tuple(networks)


def client_key(peer: str | None, forwarded_for: Iterable[str], *, trusted: tuple[Network, ...]) -> str:
    """The key a client's requests are counted under.

    `peer`: the socket peer's host; `forwarded_for`: every X-Forwarded-For header value, in order.
    """
    if peer is None:
        return UNKNOWN
    address = _parse(peer)
    if address is None:
        return peer[:64]  # not an IP (a test transport, a Unix socket name): set by the server, not the client
    if _is_trusted(address, trusted):
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            forwarded = _parse(hop)
            if forwarded is None:
                break  # a trusted proxy passed on garbage: count the request against that proxy's hop
            address = forwarded
            if not _is_trusted(address, trusted):
                break
    return _key(address)


def _parse(text: str) -> Address | None:
    """An IP address, also with a port as some proxies write it ("192.0.2.1:5060", "[2001:db8::1]:5060")."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
    return address


def _is_trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def _key(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)

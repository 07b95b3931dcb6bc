"""Client addresses: who is on the other end of a request, and the `ip` restriction of links."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_IPV4_INT = 2**32 - 1


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(text: str, trusted: Sequence[IPNetwork]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in trusted)


def client_address(*, peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str | None:
    """The client's address: the socket peer, or from `X-Forwarded-For` when the peer is a trusted proxy.

    `X-Forwarded-For` lists addresses left to right as proxies appended them; walking it from the
    right, trusted proxies are skipped and the first other address is the client. Entries left of
    it were written by the client itself and are never believed.
    """
    if peer is None or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return str(_address(hop) or hop)
    return hops[0] if hops else peer


def parse_ip_restriction(raw: str) -> str:
    """The address an `ip` parameter names, canonical; ValueError if it names none.

    MediaHub passes IPv4 addresses as a 32-bit integer (`2130706433` is `127.0.0.1`); dotted IPv4
    and IPv6 text are accepted too.
    """
    text = raw.strip()
    if text.isdigit():
        value = int(text)
        if value > MAX_IPV4_INT:
            raise ValueError("ip must be an IPv4 address as a 32-bit integer, or an address in text")
        return str(ipaddress.IPv4Address(value))
    address = _address(text)
    if address is None:
        raise ValueError("ip must be an IPv4 address as a 32-bit integer, or an address in text")
    return str(address)


def same_address(a: str | None, b: str) -> bool:
    """True when `a` is the address `b` (IPv4-mapped IPv6 counts as its IPv4 address)."""
    first, second = _address(a or ""), _address(b)
    if first is None or second is None:
        return False
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        first = first.ipv4_mapped
    return first == second

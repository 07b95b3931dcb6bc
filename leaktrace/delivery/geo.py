"""Where a client address is, offline: the country name from geoip2fast's shipped data.

geoip2fast carries its own database (IPv4 and IPv6 country ranges, no network access, no
account). Loading it takes about half a second, so it is loaded once, on first use, by the access
recorder's thread, never on a request. No shipped list tells data-centre and hosting ranges
apart yet, so every address's type is `UNK` (IP2Proxy's "unknown").
"""

from __future__ import annotations

import functools

from geoip2fast import GeoIP2Fast

DATA_FILE = "geoip2fast-ipv6.dat.gz"  # the package's file with both IPv4 and IPv6 ranges
UNKNOWN_TYPE = "UNK"
_NO_COUNTRY = ("", "--")  # invalid, private, reserved or unlisted addresses


@functools.lru_cache(maxsize=1)
def _database() -> GeoIP2Fast:
    return GeoIP2Fast(geoip2fast_data_file=DATA_FILE, verbose=False)


def country(address: str | None) -> str | None:
    """The English name of the country an address is registered in, or None when it has none."""
    if not address:
        return None
    found = _database().lookup(address)
    return None if found.country_code in _NO_COUNTRY else str(found.country_name)


def ip_type(address: str | None) -> str | None:
    """The kind of network of an address (IP2Proxy codes): `UNK` until a hosting list is shipped."""
    return UNKNOWN_TYPE if address else None

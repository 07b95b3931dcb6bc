"""The address guard: server-side connections reach public addresses only, unless allowed.

Every connection a fetch or a ping opens (each HTTP redirect hop, the S3 endpoint, the SFTP
host) resolves its host name once, refuses the whole name when any resolved address is not
public, and then connects to the very address it checked, so a second DNS answer cannot swap in
an internal one (DNS rebinding). "Public" is Python's `ipaddress.is_global` minus multicast: it
refuses loopback, private (10/8, 172.16/12, 192.168/16), link-local (169.254/16 with the cloud
metadata address 169.254.169.254, fe80::/10), CGNAT (100.64/10), unique-local (fc00::/7 with
AWS's fd00:ec2::254), unspecified, reserved and documentation ranges. An IPv4 address carried
inside IPv6 (::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4, Teredo) is judged as that IPv4 address.
Networks listed in `LEAKTRACE_FETCH_ALLOW_NETWORKS` are allowed although not public.

HTTP goes through httpx on a connection pool whose network backend is `GuardedBackend`: TLS
still verifies the certificate against the host name, while TCP goes to the checked address.
"""

from __future__ import annotations

import ipaddress
import socket
import typing

import httpcore
import httpx

from leaktrace.config import IPNetwork
from leaktrace.media.fetch.policy import FetchError, FetchPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
IPV4_MASK = 0xFFFFFFFF
MAX_POOLED_CONNECTIONS = 4


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is a wrapper around one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & IPV4_MASK)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_allowed(address: IPAddress, *, allowed_networks: tuple[IPNetwork, ...]) -> bool:
    """True when a connection to `address` is permitted (public, or in an allowed network)."""
    if any(address.version == network.version and address in network for network in allowed_networks):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_allowed(embedded, allowed_networks=allowed_networks)
    return address.is_global and not address.is_multicast


def checked_addresses(host: str, port: int, *, policy: FetchPolicy) -> list[IPAddress]:
    """The addresses of `host`, resolved once; FetchError(refused_address) when any is refused."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError("fetch_failed", f"cannot resolve host {host!r}") from None
    # A link-local IPv6 answer may carry a zone ("fe80::1%eth0"); the zone does not change its class.
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    for address in addresses:
        if not is_allowed(address, allowed_networks=policy.allowed_networks):
            raise FetchError(
                "refused_address",
                f"host {host!r} resolves to {address}, which is not a public address "
                "(LEAKTRACE_FETCH_ALLOW_NETWORKS lists the networks an operator allows)",
            )
    return addresses


def connect(host: str, port: int, *, policy: FetchPolicy) -> socket.socket:
    """A TCP socket to a checked address of `host` (tried in resolver order)."""
    failure: OSError | None = None
    for address in checked_addresses(host, port, policy=policy):
        try:
            return socket.create_connection((str(address), port), timeout=policy.connect_timeout_s)
        except OSError as exc:
            failure = exc
    raise FetchError("fetch_failed", f"cannot connect to {host}:{port} ({failure})")


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the guard checked."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in checked_addresses(host, port, policy=self._policy):
            try:
                # An address literal: the socket layer connects without another DNS lookup.
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise FetchError("fetch_failed", f"cannot connect to {host}:{port} ({failure})")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over `GuardedBackend`.

    httpx has no public switch for the network backend, so the pool `HTTPTransport` builds is
    replaced by the same kind of pool over the guarded backend; requests and responses still go
    through httpx's own conversion.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=policy.certificate_check, trust_env=False),
            max_connections=MAX_POOLED_CONNECTIONS,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: FetchPolicy) -> httpx.Client:
    """An httpx client whose every connection passes the guard; it never follows redirects by
    itself and ignores proxy variables (a proxy would connect on the guard's behalf)."""
    timeout = httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s)
    return httpx.Client(transport=GuardedTransport(policy), timeout=timeout, follow_redirects=False, trust_env=False)

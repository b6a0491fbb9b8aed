"""Which URLs users may choose (webhook receivers): the guard against server-side request
forgery.

A user who may set a URL must not make loreg reach what only loreg can reach: its own API,
the metadata service of the cloud it runs in, the database, anything on loopback or on the
private network. So every such request (sent by ``loreg.background.egress``):

1. resolves the host name (every numeric spelling, ``0x7f000001``, ``2130706433``,
   ``[::ffff:127.0.0.1]``, resolves like a name) and refuses the request when *any* address
   is loopback, private, link-local, multicast, reserved, unspecified or otherwise not
   globally routable, unless the operator allows its network (``LOREG_WEBHOOK_ALLOW_NETWORKS``);
2. connects to the address it checked, not to the name again (no second lookup a DNS
   rebinding could answer differently): the URL's host is replaced by the address, with the
   original ``Host`` header and TLS server name, so certificates are still verified
   against the name;
3. follows no redirect and uses no proxy from the environment.

The check runs when a URL is stored (a clear 400 at once) and again before every request.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from loreg.config import IPNetwork, Settings
from loreg.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(InvalidInput):
    """The URL's host is, or resolves to, an address loreg will not send requests to."""

    code = "destination_refused"


class DestinationUnresolved(InvalidInput):
    """The URL's host name does not resolve (now)."""

    code = "destination_unresolved"


@dataclass(frozen=True)
class EgressPolicy:
    """Which non-public networks requests may reach anyway (operator-chosen)."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(settings.webhook_allowed_networks)

    def allows(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.allowed_networks)


#: No exceptions: only public addresses.
STRICT = EgressPolicy()


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_not_public(address: IPAddress) -> str | None:
    """What kind of non-public address this is (``"loopback"``...), or ``None`` if public."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return why_not_public(inner)
        if address.teredo is not None:
            return "reserved"
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    ):
        if flag:
            return kind
    return None


def check_address(address: IPAddress, policy: EgressPolicy, host: str) -> None:
    """``DestinationRefused`` unless ``address`` is public or in an allowed network."""
    kind = why_not_public(address)
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if kind is None or policy.allows(address) or (inner is not None and policy.allows(inner)):
        return
    shown = host if host == str(address) else f"{host} ({address})"
    raise DestinationRefused(
        f"refusing to send requests to {shown}: it is a {kind} address. Use a receiver on a "
        "public address, or ask the operator to allow its network "
        "(LOREG_WEBHOOK_ALLOW_NETWORKS)",
        details={"host": host, "address": str(address), "kind": kind},
    )


def resolve(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    """Every address ``host`` resolves to, each checked; ``DestinationRefused`` if any is
    refused, ``DestinationUnresolved`` if there are none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DestinationUnresolved(
            f"cannot resolve host {host!r}: {getattr(exc, 'strerror', None) or exc}",
            details={"host": host},
        ) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone id is no part of the address
        address = ipaddress.ip_address(text)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationUnresolved(f"host {host!r} has no address", details={"host": host})
    for address in addresses:
        check_address(address, policy, host)
    return addresses


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput(
            "the URL must be an absolute http:// or https:// URL", details={"url": url[:200]}
        )
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, policy: EgressPolicy, *, require_resolution: bool = True) -> None:
    """Refuse a URL whose host resolves to a refused address. With ``require_resolution``
    False a name that does not resolve now passes (it is checked again at each request)."""
    host, port = host_port(url)
    try:
        resolve(host, port, policy)
    except DestinationUnresolved:
        if require_resolution:
            raise

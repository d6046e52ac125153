"""SSRF guard for reseller endpoint URLs: checked when an endpoint is added and again per send.

Registration (`validate_endpoint_url`) is a pure check of the URL text. It cannot see where a
name points, and DNS can change afterwards (rebinding), so the sender resolves through
`resolve_public` and connects only to the addresses it approved.

The host is judged as the HTTP client will connect to it (`client_url`: yarl, which aiohttp
uses), not as ``urlsplit`` reads it: the client maps Unicode hosts through IDNA, so ``127``
written with ideographic full stops (U+3002), fullwidth digits (U+FF11…) or circled digits
(U+2460…) becomes the bare IP ``127.0.0.1``, which never reaches a resolver. A host that is
not valid IDNA (either way: Unicode in, punycode out) is refused.

"Public" means globally routable unicast: loopback, RFC 1918, CGNAT, link-local (cloud
metadata 169.254.169.254), documentation, reserved, multicast, unspecified and the deprecated
IPv6 site-local ``fec0::/10`` (still routed inside some networks) are refused.
IPv6 forms that embed an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``) are judged by that IPv4 address, because that is where traffic ends up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Collection

from yarl import URL

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# hex/octal/short IPv4 spellings ("127.1", "0x7f000001") that resolvers accept as addresses
_LEGACY_IPV4 = re.compile(r"[0-9a-fx.]+")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


class UnsafeEndpoint(ValueError):
    """The URL or the address it resolves to may not receive webhooks."""


def embedded_ipv4(ip: IpAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(ip: IpAddress) -> bool:
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    # is_global alone lets multicast (224/4, ff00::/8) and site-local (fec0::/10) through
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not site_local


def ip_literal(host: str) -> IpAddress | None:
    """The address a host name denotes by itself, including legacy IPv4 spellings."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def client_url(url: str) -> URL:
    """The URL as the HTTP client will use it (host IDNA-mapped); refuses what it cannot parse."""
    try:
        parsed = URL(url)
        parsed.port  # noqa: B018 - raises on a malformed or out-of-range port
        parsed.host  # noqa: B018 - decodes punycode: raises on an invalid "xn--" label
    except (ValueError, UnicodeError):
        raise UnsafeEndpoint("endpoint URL is malformed or its host is not valid IDNA") from None
    return parsed


def _host(parsed: URL) -> str:
    host = (parsed.raw_host or "").rstrip(".")
    if not host:
        raise UnsafeEndpoint("endpoint URL has no host")
    if not host.isascii():  # yarl encodes names to ASCII; anything else is not a host we know
        raise UnsafeEndpoint("endpoint host is not valid IDNA")
    return host


def validate_endpoint_url(
    url: str, *, allow_http: bool, allow_private: bool, allowed_ports: Collection[int] = ()
) -> str:
    """The URL, stripped, if it may be registered; raises `UnsafeEndpoint` with the reason.
    ``allowed_ports`` empty: any port."""
    url = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeEndpoint("endpoint URL contains whitespace or control characters")
    parsed = client_url(url)
    scheme = parsed.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        allowed = "http or https" if allow_http else "https"
        raise UnsafeEndpoint(f"endpoint URL must use {allowed}, not {scheme or 'no scheme'!r}")
    if parsed.raw_user is not None or parsed.raw_password is not None or "@" in parsed.authority:
        raise UnsafeEndpoint("endpoint URL may not carry user:password@")
    host = _host(parsed)
    if allowed_ports and parsed.port not in allowed_ports:
        ports = ", ".join(str(p) for p in sorted(allowed_ports))
        raise UnsafeEndpoint(f"endpoint port {parsed.port} is not allowed (allowed: {ports})")
    if allow_private:
        return url
    if host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost"):
        raise UnsafeEndpoint("endpoint host is local")
    ip = ip_literal(host)
    if ip is not None and not is_public(ip):
        raise UnsafeEndpoint(f"endpoint address {ip} is not public")
    return url


async def resolve_public(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to; refuses all of them if any one is not public.

    Refusing on ANY (not filtering) matters: a name answering both a public and a private
    address is a rebinding setup, and which one a client picks is not ours to predict.
    Resolution failures propagate as `OSError` (a retryable delivery failure).
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for address in addresses:
            ip = ip_literal(address)
            if ip is None or not is_public(ip):
                raise UnsafeEndpoint(f"endpoint host {host} resolves to non-public {address}")
    return addresses

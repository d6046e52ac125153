"""SSRF guard: which endpoint URLs may be registered, and where names may resolve at send time."""

import socket
from pathlib import Path

import pytest

from infra.url_guard import UnsafeEndpoint, resolve_public, validate_endpoint_url


def ok(url: str, *, allow_http: bool = False, allow_private: bool = False) -> str:
    return validate_endpoint_url(url, allow_http=allow_http, allow_private=allow_private)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://240.0.0.1/hook",
        "https://255.255.255.255/hook",
        "https://[::1]/hook",
        "https://[::]/hook",
        "https://[fe80::1]/hook",
        "https://[fc00::1]/hook",
        "https://[ff02::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[64:ff9b::7f00:1]/hook",  # NAT64 to 127.0.0.1
        "https://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
        "https://127.1/hook",  # legacy short form
        "https://2130706433/hook",  # 127.0.0.1 as one integer
        "https://0x7f.0.0.1/hook",
        "https://localhost/hook",
        "https://LOCALHOST./hook",
        "https://api.localhost/hook",
    ],
)
def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        ok(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/simfleet",
        "https://hooks.example.com:8443/simfleet?tenant=7",
        "https://8.8.8.8/hook",
        "https://[2606:4700::1111]/hook",
        "https://[::ffff:8.8.8.8]/hook",
    ],
)
def test_public_https_targets_pass(url: str) -> None:
    assert ok(url) == url


def test_http_is_refused_unless_allowed() -> None:
    with pytest.raises(UnsafeEndpoint, match="https"):
        ok("http://hooks.example.com/x")
    assert ok("http://hooks.example.com/x", allow_http=True) == "http://hooks.example.com/x"


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.com/x", "file:///etc/passwd", "gopher://h/x", "hooks.example.com"]
)
def test_other_schemes_are_refused_even_with_http_allowed(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        ok(url, allow_http=True, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.com/x",
        "https://user@hooks.example.com/x",
        "https://hooks.example.com@127.0.0.1/x",
        "https://hooks.example.com:99999/x",
        "https:///x",
        "https://hooks.example.com/a b",
        "https://hooks.example.com/\r\nx",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        ok(url, allow_private=True)


def test_allow_private_lets_the_sandbox_on_loopback_through() -> None:
    assert ok("http://127.0.0.1:8080/hooks/a", allow_http=True, allow_private=True)
    assert ok("http://localhost:8080/hooks/a", allow_http=True, allow_private=True)


async def test_a_name_resolving_to_loopback_is_refused_at_resolution() -> None:
    with pytest.raises(UnsafeEndpoint, match="non-public"):
        await resolve_public("localhost", 443, allow_private=False)
    assert "127.0.0.1" in await resolve_public("localhost", 443, allow_private=True)


def _loopback_aliases() -> list[str]:
    """Names /etc/hosts maps to loopback, other than localhost (they pass URL validation)."""
    hosts = Path("/etc/hosts")
    if not hosts.exists():
        return []
    names = []
    for line in hosts.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0].startswith("127."):
            names += [n for n in fields[1:] if "localhost" not in n.lower()]
    return names


async def test_a_name_that_passes_validation_but_resolves_to_loopback_is_refused() -> None:
    for name in _loopback_aliases():  # e.g. the machine's own name in /etc/hosts
        assert ok(f"https://{name}/hook")
        with pytest.raises(UnsafeEndpoint):
            await resolve_public(name, 443, allow_private=False)
    # the resolver also maps the decimal form of 127.0.0.1, on every machine
    with pytest.raises(UnsafeEndpoint):
        await resolve_public("2130706433", 443, allow_private=False)


async def test_unresolvable_name_raises_a_resolution_error() -> None:
    with pytest.raises(socket.gaierror):
        await resolve_public("no-such-host.invalid", 443, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://127\u30020\u30020\u30021/hook",
        "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook",
        "https://\u2460\u2461\u2466.0.0.1/hook",
        "https://127.0.0.1\uff0e/hook",
        "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook",  # fullwidth localhost
        "https://[fec0::1]/hook",  # deprecated site-local
        "https://[feff::1]/hook",
    ],
)
def test_hosts_are_judged_as_the_client_connects_to_them(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        ok(url)


@pytest.mark.parametrize(
    "url", ["https://xn--zz.example/hook", "https://a\u200bb.example/hook", "https://a\u0000b/"]
)
def test_hosts_that_are_not_valid_idna_are_refused(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        ok(url)


def test_an_international_name_is_a_name_like_any_other() -> None:
    assert ok("https://b\u00fccher.example/hook") == "https://b\u00fccher.example/hook"


def test_ports_can_be_restricted() -> None:
    ports = (443, 8443)
    assert validate_endpoint_url(
        "https://hooks.example.com/x", allow_http=False, allow_private=False, allowed_ports=ports
    )
    assert validate_endpoint_url(
        "https://hooks.example.com:8443/x",
        allow_http=False,
        allow_private=False,
        allowed_ports=ports,
    )
    with pytest.raises(UnsafeEndpoint, match="port 22 is not allowed"):
        validate_endpoint_url(
            "https://hooks.example.com:22/x",
            allow_http=False,
            allow_private=False,
            allowed_ports=ports,
        )

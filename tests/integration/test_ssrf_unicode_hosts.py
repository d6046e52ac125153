"""The SSRF guard judges a host as the HTTP client connects to it: Unicode spellings of a
loopback address are refused at registration and at send time, and no byte reaches the
loopback listener they point at."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from infra import webhook_sender
from infra.http import free_port
from infra.settings import WebhookSettings
from infra.url_guard import UnsafeEndpoint, validate_endpoint_url
from infra.webhook_sender import EndpointTarget, Outcome, WebhookSender
from infra.webhook_signing import generate_secret

pytestmark = pytest.mark.integration

STRICT = WebhookSettings(allow_http=True, allow_private=False, timeout_s=2)


class Listener:
    """A plain TCP listener on loopback that records every connection and answers 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.received = b""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.received += await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\ninternal!")
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    found = Listener()
    server = await asyncio.start_server(found._serve, "127.0.0.1", found.port)
    async with server:
        yield found


def unicode_loopback_urls(port: int) -> list[str]:
    return [
        f"http://127\u30020\u30020\u30021:{port}/x",  # ideographic full stops
        f"http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/x",  # fullwidth digits
        f"http://\u2460\u2461\u2466.0.0.1:{port}/x",  # circled digits
        f"http://127.0.0.1\uff0e:{port}/x",  # fullwidth trailing dot
    ]


async def test_unicode_spellings_of_loopback_never_reach_the_listener(listener: Listener) -> None:
    urls = unicode_loopback_urls(listener.port)
    for url in urls:
        with pytest.raises(UnsafeEndpoint):
            validate_endpoint_url(url, allow_http=True, allow_private=False)

    # registered before the guard knew better (or through an old event): refused when sending
    async with WebhookSender(STRICT) as sender:
        results = [
            await sender.deliver(EndpointTarget(f"ep-{n}", url, (generate_secret(),)), "m", b"{}")
            for n, url in enumerate(urls)
        ]

    assert [r.outcome for r in results] == [Outcome.BLOCKED] * len(urls)
    assert all("internal" not in (r.error or "") for r in results)
    assert listener.connections == 0


async def test_the_same_listener_is_reached_when_private_targets_are_allowed(
    listener: Listener,
) -> None:
    """The control: the listener does answer, so the refusals above are the guard's doing."""
    lax = STRICT.model_copy(update={"allow_private": True})
    async with WebhookSender(lax) as sender:
        url = unicode_loopback_urls(listener.port)[0]
        result = await sender.deliver(EndpointTarget("ep", url, (generate_secret(),)), "m", b"{}")
    assert result.outcome is Outcome.DELIVERED
    assert listener.connections == 1
    assert b"POST /x HTTP/1.1" in listener.received


async def test_ports_outside_the_allowed_list_are_refused_when_sending(listener: Listener) -> None:
    only_https = STRICT.model_copy(update={"allow_private": True, "allowed_ports": (443, 8443)})
    url = f"http://127.0.0.1:{listener.port}/x"
    with pytest.raises(UnsafeEndpoint, match="port"):
        validate_endpoint_url(url, allow_http=True, allow_private=True, allowed_ports=(443, 8443))
    async with WebhookSender(only_https) as sender:
        result = await sender.deliver(EndpointTarget("ep", url, (generate_secret(),)), "m", b"{}")
    assert result.outcome is Outcome.BLOCKED
    assert listener.connections == 0


async def test_spellings_the_client_reads_as_another_address_are_refused_when_sending(
    listener: Listener,
) -> None:
    """Percent-encoded octets pass the text check as names; the HTTP client would read them as
    ``127.0.0.1`` and dial it without any lookup. The host it reads must be the one checked."""
    urls = [
        f"http://127.0.0.%31:{listener.port}/x",
        f"http://%31%32%37.0.0.1:{listener.port}/x",
    ]
    async with WebhookSender(STRICT) as sender:
        results = [
            await sender.deliver(EndpointTarget(f"ep-{n}", url, (generate_secret(),)), "m", b"{}")
            for n, url in enumerate(urls)
        ]
    assert [r.outcome for r in results] == [Outcome.BLOCKED] * len(urls)
    assert listener.connections == 0


async def test_a_name_is_dialled_only_at_the_addresses_the_guard_approved(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hooks.simfleet.invalid`` has no address in any DNS: the POST reaching the listener
    shows the client dialled what the guard's lookup answered, and nothing of its own."""
    looked_up: list[str] = []

    async def guard(host: str, port: int, *, allow_private: bool) -> list[str]:
        looked_up.append(host)
        assert not allow_private
        return ["127.0.0.1"]

    monkeypatch.setattr(webhook_sender, "resolve_public", guard)
    url = f"http://hooks.simfleet.invalid:{listener.port}/x"
    async with WebhookSender(STRICT) as sender:
        result = await sender.deliver(EndpointTarget("ep", url, (generate_secret(),)), "m", b"{}")
        again = await sender.deliver(EndpointTarget("ep", url, (generate_secret(),)), "m", b"{}")
    assert (result.outcome, again.outcome) == (Outcome.DELIVERED, Outcome.DELIVERED)
    assert looked_up == ["hooks.simfleet.invalid"]  # the answer kept for DNS_TTL_S
    assert b"host: hooks.simfleet.invalid" in listener.received.lower()

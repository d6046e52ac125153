"""Simulated Skyline gateways: they push received SMS to the bridge in the real wire formats.

A ``SandboxGateway`` is one gateway (identified by its MAC) configured, as a real one is, with
the bridge URL ``<bridge>/s/<secret>/sms``. ``push_sms`` sends what a device sends
(EXTERNAL_APIS §1.1): the JSON ``recv-sms`` push with base64 content carrying the real header
block, or the "SMS to HTTP" text push with ``port/sender/mac/iccid`` query parameters. Like a
device, it retries while the bridge answers 503, honouring ``Retry-After`` (bounded).

``inject_sms`` is the one-shot form behind ``simfleet sandbox sms --to … --body …``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx

DEFAULT_GATEWAY_ID = "00-30-f1-00-00-01"
DEFAULT_SENDER = "+15550001111"
SANDBOX_SMSC = "12063130004"

PushMode = Literal["json", "http"]


class BridgeRefused(RuntimeError):
    """The bridge did not answer 200 (after the retries a gateway would make)."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"bridge answered {status_code}: {body[:200]}")
        self.status_code = status_code
        self.body = body


class SandboxGateway:
    def __init__(
        self,
        bridge_url: str,
        gateway_id: str,
        secret: str,
        *,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = 5,
        max_retry_after_s: float = 10.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.gateway_id = gateway_id
        self.push_url = f"{bridge_url.rstrip('/')}/s/{secret}/sms"
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None
        self._max_attempts = max(1, max_attempts)
        self._max_retry_after_s = max_retry_after_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def push_sms(
        self,
        port: str,
        sender: str,
        to: str | None,
        body: str,
        *,
        iccid: str | None = None,
        imsi: str | None = None,
        when: datetime | None = None,
        mode: PushMode = "json",
    ) -> dict[str, Any]:
        """Pushes one received SMS; returns the bridge's answer (``{"accepted": 1, "ids": …}``)."""
        when = when or datetime.fromtimestamp(int(time.time()), UTC)
        text = header_block(port, sender, when) + body
        if mode == "json":
            row: list[Any] = [0, port, int(when.timestamp()), sender, _national(to), _b64(text)]
            if iccid:  # newer firmware appends iccid, imsi and one more field
                row += [iccid, imsi or "", ""]
            push = {"type": "recv-sms", "sms_num": 1, "sms": [row]}
            return await self._post({"gateway_id": self.gateway_id}, json=push)
        query = {"port": port, "sender": sender.lstrip("+"), "mac": self.gateway_id}
        if iccid:
            query["iccid"] = iccid
        headers = {"content-type": "application/octet-stream"}
        return await self._post(query, content=text.encode(), headers=headers)

    async def _post(self, params: dict[str, str], **request: Any) -> dict[str, Any]:
        for attempt in range(1, self._max_attempts + 1):
            response = await self._client.post(self.push_url, params=params, **request)
            if response.status_code != 503 or attempt == self._max_attempts:
                break
            await asyncio.sleep(self._retry_delay(response, attempt))
        if response.status_code != 200:
            raise BridgeRefused(response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        advised = response.headers.get("retry-after", "")
        delay = float(advised) if advised.isdigit() else 0.5 * 2**attempt
        return min(delay, self._max_retry_after_s)


def header_block(port: str, sender: str, when: datetime) -> str:
    """The block real devices put before the message (CRLF, trailing space after Receiver)."""
    scts = when.astimezone(UTC).strftime("%y%m%d%H%M%S") + "00"
    return (
        f'Sender: {sender.lstrip("+")}\r\nReceiver: "{port}" \r\nSMSC: {SANDBOX_SMSC}\r\n'
        f'SCTS: {scts}\r\nSlot: "{_slot(port)}"\r\n\r\n'
    )


def _slot(port: str) -> str:
    # "1.01" → "01"; "61A" → slot A = "01"; exotic names keep their last part
    if match := re.fullmatch(r"\d+([A-Z])", port):
        return f"{ord(match.group(1)) - ord('A') + 1:02d}"
    return port.rsplit(".", 1)[-1]


def _national(number: str | None) -> str:
    # gateways write their own number as configured, typically 10 digits, often not at all
    if not number:
        return ""
    digits = number.removeprefix("+")
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def inject_sms(
    bridge_url: str,
    secret: str,
    to: str,
    body: str,
    *,
    sender: str = DEFAULT_SENDER,
    port: str = "1.01",
    gateway_id: str = DEFAULT_GATEWAY_ID,
    mode: PushMode = "json",
) -> dict[str, Any]:
    """One SMS to ``to``, pushed to the bridge as a gateway would (``simfleet sandbox sms``)."""
    async with SandboxGateway(bridge_url, gateway_id, secret) as gateway:
        return await gateway.push_sms(port, sender, to, body, mode=mode)

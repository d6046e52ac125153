"""Where operational alerts go: a Slack-compatible incoming webhook (``POST {"text": …}``).

The URL is a secret (an incoming-webhook URL is its own credential): never logged, and every
text is passed through the redactor with the deployment's secrets before it leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import httpx
import structlog

from infra.redaction import redact

log = structlog.get_logger("simfleet.alerts")


class AlertSinkError(RuntimeError):
    """The sink did not take the message (it is sent again on the next round)."""


class AlertSink(Protocol):
    async def send(self, text: str) -> None: ...


class SlackSink:
    def __init__(self, client: httpx.AsyncClient, url: str, secrets: Iterable[str] = ()) -> None:
        self._client = client
        self._url = url
        self._secrets = [*secrets, url]

    async def send(self, text: str) -> None:
        body = {"text": str(redact(text, self._secrets))}
        try:
            answer = await self._client.post(self._url, json=body)
        except httpx.HTTPError as err:
            raise AlertSinkError(f"alert sink unreachable: {type(err).__name__}") from None
        if not answer.is_success:
            raise AlertSinkError(f"alert sink answered {answer.status_code}")


class LogSink:
    """No ``ALERT_WEBHOOK_URL``: alerts are only logged (and kept in ``alert_incidents``)."""

    async def send(self, text: str) -> None:
        log.warning("alert", text=text)

"""The Helix audit trail: every HTTP call to the carrier becomes a redacted ``helix.api_called``.

The audit never changes a call's outcome: a failed emit is logged and the call goes on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from events.envelope import new_ref
from events.helix import HelixApiCalled
from infra.clock import Clock
from infra.helix.errors import HelixError, error_for, reply_body
from infra.metrics import HELIX_CALLS, HELIX_LATENCY
from infra.redaction import Redactor

Emit = Callable[[HelixApiCalled], Awaitable[None]]
log = structlog.get_logger(__name__)

PRODUCER = "simfleet/helix"
MAX_RESPONSE_TEXT = 64 * 1024  # a carrier answer is a few KB; an HTML error page is cut here


def run_id() -> str | None:
    """The run making calls now: bound as ``run_id`` by an operator lookup, else the event being
    handled (consumers bind ``event_id``)."""
    bound = structlog.contextvars.get_contextvars()
    found = bound.get("run_id") or bound.get("event_id")
    return str(found) if found else None


@dataclass(frozen=True)
class HelixCall:
    operation: str  # helix_api_logs step: activation, subscriber_details, mdn_change, …
    method: str
    url: str
    body: Any
    iccid: str | None = None
    subscription_id: str | None = None


class HelixAudit:
    def __init__(self, emit: Emit, clock: Clock, redact: Redactor, base_url: httpx.URL) -> None:
        self._emit, self._clock, self._redact, self._base_url = emit, clock, redact, base_url

    async def record(
        self,
        call: HelixCall,
        started: float,
        response: httpx.Response | None,
        error: HelixError | None,
    ) -> None:
        """``started`` is the call's ``time.monotonic()``; ``error`` one raised without a reply."""
        now = self._clock.now()
        reply = reply_body(response) if response is not None else None
        text = response.text[:MAX_RESPONSE_TEXT] if response is not None else None
        if call.operation == "token" and isinstance(reply, dict):
            self._redact.add(str(reply.get("access_token") or ""))
        if response is not None and not response.is_success:
            error = error_for(response, reply)
        event = HelixApiCalled.create(
            producer=PRODUCER,
            time=now,
            correlationid=structlog.contextvars.get_contextvars().get("correlationid"),
            call_id=new_ref(),
            operation=call.operation,
            iccid=call.iccid,
            mobility_subscription_id=call.subscription_id,
            method=call.method,
            url=self._redact(str(self._base_url.join(call.url))),
            status_code=response.status_code if response is not None else None,
            ok=response is not None and response.is_success,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            request_body=self._redact(call.body),
            response_body=self._redact(reply),
            error=self._redact(str(error)) if error is not None else None,
            called_at=now,
            request_headers=self._headers(response.request.headers) if response else None,
            response_headers=self._headers(response.headers) if response else None,
            response_text=self._redact(text) if text is not None else None,
            run_id=run_id(),
        )
        HELIX_CALLS.labels(call.operation, str(event.data.ok).lower()).inc()
        HELIX_LATENCY.labels(call.operation).observe(event.data.duration_ms / 1000)
        try:
            await self._emit(event)
        except Exception as err:  # the audit trail must never change a carrier call's outcome
            log.warning("helix_audit_failed", operation=call.operation, error=type(err).__name__)

    def _headers(self, headers: httpx.Headers) -> dict[str, str]:
        redacted: dict[str, str] = self._redact(dict(headers.items()))
        return redacted

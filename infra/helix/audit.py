"""The Helix audit trail: every HTTP call to the carrier becomes a redacted ``helix.api_called``.

The audit never changes a call's outcome: a failed emit is logged and the call goes on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
import structlog

from events.envelope import canonical_id, new_ref, storable
from events.helix import HelixApiCalled, HelixApiCalledData
from infra.clock import Clock
from infra.helix.errors import HelixError, error_for
from infra.metrics import HELIX_CALLS, HELIX_LATENCY
from infra.redaction import Redactor

Emit = Callable[[HelixApiCalled], Awaitable[None]]
log = structlog.get_logger(__name__)

PRODUCER = "simfleet/helix"
EVENT_TYPE = HelixApiCalled.event_type()
MAX_RESPONSE_TEXT = 64 * 1024  # a carrier answer is a few KB; an HTML error page is cut here


def _run_of(bound: dict[str, Any]) -> str | None:
    """The run making calls now: bound as ``run_id`` by an operator lookup, else the event being
    handled (consumers bind ``event_id``)."""
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


class _Heard(NamedTuple):
    """What a call's answer adds to its audit event (a call without one: its error alone)."""

    ok: bool = False
    status_code: int | None = None
    error: HelixError | None = None
    request_headers: dict[str, str] | None = None
    response_headers: dict[str, str] | None = None
    response_text: str | None = None
    has_nul: bool = False  # U+0000 in the answer: its parsed body is made storable too


class HelixAudit:
    def __init__(self, emit: Emit, clock: Clock, redact: Redactor) -> None:
        self._emit, self._clock, self._redact = emit, clock, redact

    async def record(
        self,
        call: HelixCall,
        url: str,
        started: float,
        answer: tuple[httpx.Response, Any] | None,
        error: HelixError | None,
    ) -> None:
        """``url``: the one requested; ``started``: the call's ``time.monotonic()``; ``answer``:
        the response and its body as ``reply_body`` read it; ``error``: one raised without a
        reply."""
        event = self.fact(call, url, started, answer, error)
        HELIX_CALLS.labels(call.operation, "true" if event.data.ok else "false").inc()
        HELIX_LATENCY.labels(call.operation).observe(event.data.duration_ms / 1000)
        try:
            await self._emit(event)
        except Exception as err:  # the audit trail must never change a carrier call's outcome
            log.warning("helix_audit_failed", operation=call.operation, error=type(err).__name__)

    def fact(
        self,
        call: HelixCall,
        url: str,
        started: float,
        answer: tuple[httpx.Response, Any] | None,
        error: HelixError | None,
    ) -> HelixApiCalled:
        """``helix.api_called`` as ``Event.create`` makes it, for a fraction of the CPU: one per
        carrier call, two per SIM provisioned. ``create`` dumps the payload back to JSON for an
        id that is the call id's alone, and walks every field for U+0000; here the id comes from
        the call id and only what the carrier sent is made storable. The unit tests hold both
        ways to the same event."""
        now = self._clock.now()
        redact = self._redact
        reply = answer[1] if answer is not None else None
        heard = _Heard(error=error) if answer is None else self._heard(call, *answer, error)
        bound = structlog.contextvars.get_contextvars()
        call_id = new_ref()
        event_id = canonical_id(EVENT_TYPE, {"call_id": call_id})
        data = HelixApiCalledData(
            call_id=call_id,
            operation=call.operation,
            iccid=call.iccid,
            mobility_subscription_id=call.subscription_id,
            method=call.method,
            url=redact(url),
            status_code=heard.status_code,
            ok=heard.ok,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            request_body=storable(redact(call.body)),
            response_body=storable(redact(reply)) if heard.has_nul else redact(reply),
            error=storable(redact(str(heard.error))) if heard.error is not None else None,
            called_at=now,
            request_headers=heard.request_headers,
            response_headers=heard.response_headers,
            response_text=heard.response_text,
            run_id=_run_of(bound),
        )
        return HelixApiCalled(
            id=event_id,
            source=PRODUCER,
            subject=HelixApiCalled.subject_of(data),
            time=now,
            correlationid=bound.get("correlationid") or event_id,
            data=data,
        )

    def _heard(
        self, call: HelixCall, response: httpx.Response, reply: Any, error: HelixError | None
    ) -> _Heard:
        if call.operation == "token" and isinstance(reply, dict):
            self._redact.add(str(reply.get("access_token") or ""))
        ok = response.is_success
        # U+0000 reaches the parsed answer only from the bytes, raw (UTF-16 and UTF-32, which
        # JSON may come in, have them for every ASCII character) or as JSON's escape
        raw = response.content
        return _Heard(
            ok=ok,
            status_code=response.status_code,
            error=error if ok else error_for(response, reply),
            request_headers=self._headers(response.request.headers),
            response_headers=storable(self._headers(response.headers)),
            response_text=storable(self._redact(response.text[:MAX_RESPONSE_TEXT])),
            has_nul=b"\x00" in raw or b"\\u0000" in raw,
        )

    def _headers(self, headers: httpx.Headers) -> dict[str, str]:
        redacted: dict[str, str] = self._redact(dict(headers.items()))
        return redacted

"""The hot path's ``helix.api_called`` is the event ``Event.create`` makes from the same call:
same fields, same bytes on the wire (secrets redacted, U+0000 from the carrier made storable),
and it decodes as any other event."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog

from events import codec
from events.helix import HelixApiCalled
from infra.helix.audit import PRODUCER, HelixAudit, HelixCall
from infra.helix.errors import HelixError, HelixUnavailable, error_for, reply_body
from infra.redaction import Redactor

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
URL = "https://carrier.example/api/mobility-subscriber/details"
PASSWORD = "grant-pass-0123"


class Fixed:
    def now(self) -> datetime:
        return T0


async def ignore(_: HelixApiCalled) -> None:
    return None


def answered(
    status: int, body: Any = None, text: str | None = None, raw: bytes | None = None
) -> httpx.Response:
    request = httpx.Request(
        "POST", URL, json={"iccid": "8901"}, headers={"authorization": "Bearer sbx.tok-secret-1"}
    )
    if raw is not None:
        return httpx.Response(status, content=raw, request=request)
    if text is not None:
        return httpx.Response(status, text=text, request=request)
    return httpx.Response(status, json=body, request=request, headers={"x-trace": "t-1"})


def created(
    call: HelixCall, fast: HelixApiCalled, response: httpx.Response | None, error: Any
) -> HelixApiCalled:
    """What the audit built before: every field redacted, then ``create`` (storable, id)."""
    redact = Redactor([PASSWORD])
    reply = reply_body(response) if response is not None else None
    if response is not None and not response.is_success:
        error = error_for(response, reply)
    return HelixApiCalled.create(
        producer=PRODUCER,
        time=T0,
        correlationid=structlog.contextvars.get_contextvars().get("correlationid"),
        call_id=fast.data.call_id,
        operation=call.operation,
        iccid=call.iccid,
        mobility_subscription_id=call.subscription_id,
        method=call.method,
        url=redact(URL),
        status_code=response.status_code if response is not None else None,
        ok=response is not None and response.is_success,
        duration_ms=fast.data.duration_ms,
        request_body=redact(call.body),
        response_body=redact(reply),
        error=redact(str(error)) if error is not None else None,
        called_at=T0,
        request_headers=redact(dict(response.request.headers.items())) if response else None,
        response_headers=redact(dict(response.headers.items())) if response else None,
        response_text=redact(response.text[: 64 * 1024]) if response is not None else None,
        run_id=fast.data.run_id,
    )


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


CALL = HelixCall(
    "subscriber_details", "POST", "/api/x", {"mobilitySubscriptionId": 38100}, "8901", "38100"
)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (answered(200, [{"iccid": "8901", "phoneNumber": "6465550100", "status": "ACTIVE"}]), None),
        (answered(200, {"note": f"nul \x00 here, password {PASSWORD}"}), None),
        (answered(500, {"errorMessage": "Internal error, try again"}), None),
        (answered(400, text="<html>Bad Request \x00</html>"), None),
        (answered(200, raw='{"note": "utf-16 \x00"}'.encode("utf-16")), None),
        (answered(200, raw=b'{"note": "escaped \\u0000 nul"}'), None),
        (None, HelixUnavailable("ReadTimeout: timed out", ambiguous=True)),
    ],
)
@pytest.mark.parametrize("bound", [{}, {"correlationid": "corr-9", "event_id": "ev-7"}])
def test_the_fast_event_is_the_created_event(
    response: httpx.Response | None, error: HelixError | None, bound: dict[str, str]
) -> None:
    audit = HelixAudit(ignore, Fixed(), Redactor([PASSWORD]))
    answer = (response, reply_body(response)) if response is not None else None
    with structlog.contextvars.bound_contextvars(**bound):
        fast = audit.fact(CALL, URL, time.monotonic(), answer, error)
        slow = created(CALL, fast, response, error)
    assert fast == slow
    assert codec.encode(fast) == codec.encode(slow)
    assert codec.decode(codec.encode(fast)) == slow
    assert PASSWORD not in codec.encode(fast).decode()
    assert "tok-secret-1" not in codec.encode(fast).decode()
    assert not has_nul(fast.model_dump())  # made storable
    assert fast.data.run_id == bound.get("event_id")


def test_a_token_answer_teaches_the_redactor_its_token() -> None:
    redact = Redactor([PASSWORD])
    audit = HelixAudit(ignore, Fixed(), redact)
    grant = answered(200, {"access_token": "sbx.fresh-token-42", "expires_in": 86400})
    call = HelixCall("token", "POST", "/oauth/token", {"password": PASSWORD})
    fact = audit.fact(call, URL, time.monotonic(), (grant, reply_body(grant)), None)
    wire = codec.encode(fact).decode()
    assert "sbx.fresh-token-42" not in wire
    assert PASSWORD not in wire
    assert redact("echo sbx.fresh-token-42") == "echo ***"

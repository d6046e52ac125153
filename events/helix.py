"""Carrier API audit → topic ``helix.calls``: every Helix call, secrets redacted before emit."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, Payload


class HelixApiCalledData(Payload):
    call_id: str
    operation: str = Field(description="token, activate, subscriber_details, mdn_change, …")
    iccid: str | None = None
    mobility_subscription_id: str | None = None
    method: str
    url: str
    status_code: int | None = None
    ok: bool
    duration_ms: float
    request_body: Any = Field(default=None, description="redacted")
    response_body: Any = Field(default=None, description="redacted")
    error: str | None = None
    called_at: AwareDatetime
    request_headers: dict[str, str] | None = Field(default=None, description="as sent, redacted")
    response_headers: dict[str, str] | None = Field(
        default=None, description="as received, redacted"
    )
    response_text: str | None = Field(
        default=None, description="the answer as the carrier sent it (raw text), redacted"
    )
    run_id: str | None = Field(
        default=None,
        description="the run that made the call: an operator lookup's id, else the id of the "
        "event whose handling made it",
    )


class HelixApiCalled(Event):
    type: Literal["helix.api_called"] = "helix.api_called"
    data: HelixApiCalledData
    identity: ClassVar[tuple[str, ...]] = ("call_id",)

    @classmethod
    def subject_of(cls, data: Payload) -> str:
        if not isinstance(data, HelixApiCalledData):
            raise TypeError(type(data).__name__)
        return data.iccid or data.mobility_subscription_id or data.operation

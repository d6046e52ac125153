"""Gateway facts → ``gateway.status`` (port health) and ``gateway.rejected`` (kept verbatim)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, Payload


class PortStatus(Payload):
    port: str
    status_code: int = Field(description="Skyline port status: 3 = registered (ready)")
    iccid: str | None = None
    imsi: str | None = None
    number: str | None = None


class GatewayStatusReportedData(Payload):
    gateway_id: str
    seq: int | None = None
    max_ports: int | None = None
    max_slots: int | None = None
    ports: tuple[PortStatus, ...]
    reported_at: AwareDatetime
    host: str | None = Field(
        default=None, description="the address the push came from (where its API is reached)"
    )


class GatewayStatusReported(Event):
    type: Literal["gateway.status_reported"] = "gateway.status_reported"
    data: GatewayStatusReportedData
    subject_field: ClassVar[str] = "gateway_id"


class GatewayPayloadRejectedData(Payload):
    ref: str = Field(description="unique id of the rejected request")
    gateway_id: str
    reason: str
    status_code: int = Field(description="HTTP status the bridge answered")
    method: str
    path: str
    query: str = Field(description="query string, secret removed")
    headers: dict[str, str] = Field(description="request headers, secret removed")
    body_base64: str
    received_at: AwareDatetime


class GatewayPayloadRejected(Event):
    type: Literal["gateway.payload_rejected"] = "gateway.payload_rejected"
    data: GatewayPayloadRejectedData
    identity: ClassVar[tuple[str, ...]] = ("ref",)
    subject_field: ClassVar[str] = "gateway_id"

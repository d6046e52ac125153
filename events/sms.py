"""Inbound SMS facts → topic ``sms.inbound`` (key: the receiving number; see ``events.topics``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, Payload, canonical_id
from events.types import E164, Iccid


class SmsReceivedData(Payload):
    gateway_id: str = Field(description="gateway MAC or configured id")
    port: str | None = Field(default=None, description="receiving port, e.g. 1.01 or 61A")
    sender: str = Field(description="originating number (E.164 when numeric) or alphanumeric id")
    to: E164 | None = Field(
        default=None,
        description="receiving number: as pushed, else the receiving SIM's current number "
        "(looked up by the bridge); empty only while that SIM is unknown",
    )
    iccid: Iccid | None = Field(default=None, description="receiving SIM, when the gateway says")
    imsi: str | None = None
    gateway_sms_id: str | None = Field(
        default=None, description="the gateway's own message identity (inbox id), when given"
    )
    body: str
    received_at: AwareDatetime
    gateway_host: str | None = Field(
        default=None, description="the address the gateway pushed from (where its API is reached)"
    )


class SmsReceived(Event):
    """The same push twice gives the same id. With the gateway's own message identity the id is
    over gateway, port, SIM and that identity; otherwise over gateway, port, sender, receiver,
    body and the time to the second — two identical codes a minute apart are two SMS."""

    type: Literal["sms.received"] = "sms.received"
    data: SmsReceivedData
    identity: ClassVar[tuple[str, ...]] = (
        "gateway_id",
        "port",
        "sender",
        "to",
        "received_at",
        "body",
    )

    @classmethod
    def id_for(cls, data: Payload) -> str:
        if not isinstance(data, SmsReceivedData):
            raise TypeError(type(data).__name__)
        if data.gateway_sms_id:
            identity = {
                "gateway_id": data.gateway_id,
                "port": data.port,
                "iccid": data.iccid,
                "imsi": data.imsi,
                "gateway_sms_id": data.gateway_sms_id,
            }
        else:
            dumped = data.model_dump(mode="json", include=set(cls.identity))
            dumped["received_at"] = data.received_at.replace(microsecond=0).isoformat()
            identity = dumped
        return canonical_id(cls.event_type(), identity)

    @classmethod
    def subject_of(cls, data: Payload) -> str:
        if not isinstance(data, SmsReceivedData):
            raise TypeError(type(data).__name__)
        return data.to or data.iccid or f"{data.gateway_id}:{data.port or ''}"


class SmsDeliveryReportedData(Payload):
    gateway_id: str
    port: str | None = None
    smsc: str
    recipient: str
    status_code: int = Field(description="0 = delivered")
    raw: str
    reported_at: AwareDatetime


class SmsDeliveryReported(Event):
    type: Literal["sms.delivery_reported"] = "sms.delivery_reported"
    data: SmsDeliveryReportedData
    subject_field: ClassVar[str] = "recipient"


# what ``sms.inbound`` carries: one class per ``type``, told apart by it
SmsInboundEvent = Annotated[
    SmsReceived | SmsDeliveryReported,
    Field(discriminator="type"),
]

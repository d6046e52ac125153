"""The gateway push bodies as pydantic models (also the bridge's OpenAPI request bodies).

Wire formats: EXTERNAL_APIS §1.1 (Skyline JSON push) and simfleet's generic ``SimpleSms``.
Extra fields are kept (``extra="allow"``): firmware versions add some, and none is refused for it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from producers.skyline.push_fields import MAX_PUSH_ITEMS


def _leading_int(value: object) -> object:
    # some firmware writes the port state as "3 OK" instead of 3
    if isinstance(value, str) and (match := re.match(r"\s*(\d+)", value)):
        return int(match.group(1))
    return value


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class PortStatusRow(_Wire):
    port: str = Field(description="port name: 1.01 (port.slot), 61A (port + slot letter)")
    st: Annotated[int, BeforeValidator(_leading_int)] = Field(
        description='port state, 3 = registered; "3 OK" is accepted too'
    )
    iccid: str | None = None
    imsi: str | None = None
    sn: str | None = Field(default=None, description="the SIM's own number, when configured")


class DevStatusPush(_Wire):
    """Periodic status of every port (``max-slot`` on real devices, ``max-slots`` in the manual)."""

    type: Literal["dev-status"]
    seq: int | None = None
    mac: str | None = None
    max_ports: int | None = Field(default=None, alias="max-ports")
    max_slots: int | None = Field(
        default=None, validation_alias=AliasChoices("max-slots", "max-slot")
    )
    status: list[PortStatusRow] = Field(max_length=MAX_PUSH_ITEMS)


class PortStatusPush(PortStatusRow):
    """One port's status, pushed on every change."""

    type: Literal["port-status"]
    mac: str | None = None


class RecvSmsPush(_Wire):
    """Received SMS and delivery reports."""

    type: Literal["recv-sms"]
    sms_num: int | None = None
    sms: list[list[Any]] = Field(
        max_length=MAX_PUSH_ITEMS,
        description="rows [flag, port, unix_seconds, from, to, content] + optional "
        "[iccid, imsi, extra]; flag 0 = SMS, 1 = delivery report; content = base64 of UTF-8 "
        "(header block, blank line, message) or plain text; unix_seconds 0 = now",
    )


class SimpleSms(BaseModel):
    """simfleet's generic inbound SMS (one object or a list)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    to: str | None = Field(default=None, description="receiving number")
    sender: str = Field(alias="from", description="originating number or alphanumeric id")
    body: str
    received_at: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with offset, or unix seconds; missing = now"
    )
    gateway_id: str | None = None
    port: str | None = None
    iccid: str | None = None


WIRE_MODELS: tuple[type[BaseModel], ...] = (RecvSmsPush, DevStatusPush, PortStatusPush, SimpleSms)

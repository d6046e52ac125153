"""What the Helix client returns: the carrier's answers as small frozen models.

The carrier's JSON is camelCase and loose (ids are strings in details and numbers elsewhere,
"" stands for null), so the models normalise on the way in and ignore fields they do not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from events.sim import StatusAction
from events.types import normalize_e164


def _id(value: Any) -> Any:
    return str(value) if isinstance(value, int) else value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else _id(value)


Id = Annotated[str, BeforeValidator(_id)]  # ids are strings in details, numbers elsewhere
Text = Annotated[str | None, BeforeValidator(_blank_is_none)]


class CarrierModel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class SubscriberDetails(CarrierModel):
    mobility_subscription_id: Id
    phone_number: Text = None  # 10 digits; null or "" until the carrier assigns one
    old_phone_number: Text = None
    iccid: Text = None
    billing_imei: Text = None
    plan_id: Text = None
    plan_name: Text = None
    status: str = ""  # ACTIVE, ACTIVATED, SUSPENDED, CANCELED, ACTIVATION_FAILED
    status_reason: Text = None
    activated_at: Text = None  # timestamps kept verbatim: the carrier's format is not documented
    canceled_at: Text = None
    suspended_at: Text = None
    address1: Text = None
    city: Text = None
    state: Text = None
    zip_code: Text = None
    fan: Text = None
    client_id: Text = None
    network_type: Text = None

    @property
    def is_active(self) -> bool:
        return self.status.upper() in ("ACTIVE", "ACTIVATED")

    @property
    def is_cancelled(self) -> bool:
        return self.status.upper() in ("CANCELED", "CANCELLED")

    @property
    def has_failed(self) -> bool:
        reason = (self.status_reason or "").lower()
        return self.status.upper() == "ACTIVATION_FAILED" or "timed out" in reason

    @property
    def number(self) -> str | None:
        """The current number in E.164, None while unassigned; ValueError if malformed."""
        return normalize_e164(self.phone_number) if self.phone_number else None


class ReasonCode(CarrierModel):
    """A row of the carrier's reason-code table (what ``set_status`` must send)."""

    reason_code: str
    reason_code_id: Id
    subscriber_state: Text = None
    description: Text = None


class MdnChangeResult(CarrierModel):
    subscriber_number: Text = None
    new_subscriber_number: str
    change_status: str
    mobility_subscription_id: Id


@dataclass(frozen=True)
class StatusChangeResult:
    subscriber_number: str
    action: StatusAction
    already: bool = False  # the carrier said it was already done ("already cancelled")

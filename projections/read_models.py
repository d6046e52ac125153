"""What the read queries share: the frozen ``View`` base, the page size, the SIM statuses, and
``SmsRow`` (the SMS log and the SIM page both list SMS).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

PAGE_SIZE = 50
SIM_STATUSES = ("pending", "provisioning", "active", "suspended", "cancelled", "error")
SimStatus = Literal["pending", "provisioning", "active", "suspended", "cancelled", "error"]


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class SmsRow(View):
    id: int
    message_id: str
    received_at: datetime
    gateway_id: str
    port: str | None
    sender: str
    to_number: str | None
    sim_iccid: str | None
    unknown_sim: bool
    body: str

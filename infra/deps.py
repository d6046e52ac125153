"""Handler dependencies, resolved from FastStream's context (filled by the composition root)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from faststream import Context

from infra.clock import Clock
from infra.helix import HelixClient
from infra.kafka import Bus
from infra.settings import Settings
from infra.webhook_sender import WebhookSender

BusDep = Annotated[Bus, Context("bus")]
PoolDep = Annotated[asyncpg.Pool, Context("pool")]
ClockDep = Annotated[Clock, Context("clock")]
SettingsDep = Annotated[Settings, Context("settings")]
HelixDep = Annotated[HelixClient, Context("helix")]
WebhookSenderDep = Annotated[WebhookSender, Context("webhook_sender")]

"""The reseller portal's world: the webhook world (broker, Postgres, projections, consumer,
sandbox receiver) plus the token, attempt, SMS and audit projections, and the reseller API
served over ASGI with the world's own sealing box."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import httpx
from fastapi import FastAPI

from dashboard.reseller_api.app import PREFIX, build_portal, create_reseller_api
from infra.clock import SystemClock
from infra.settings import ResellerApiSettings, Settings
from producers.reseller_tokens import IssuedToken, ResellerTokens, Scope
from projections.attempts import AttemptsProjection
from projections.audit import OperatorAuditProjection
from projections.reseller_tokens import ResellerTokensProjection
from projections.sms import InboundSmsProjection
from tests.support.eventually import eventually
from tests.support.projecting import projecting
from tests.support.webhook_world import World, webhook_world

GENEROUS = ResellerApiSettings(rate_per_s=1000.0, burst=1000)


@dataclass
class PortalWorld:
    world: World
    tokens: ResellerTokens
    api: FastAPI

    async def token(
        self, reseller_id: str, name: str, scope: Scope = "read-write", days: float = 1.0
    ) -> IssuedToken:
        """A token issued as an operator would, once the projection made it usable."""
        issued = await self.tokens.issue(reseller_id, name, scope, days, "cli:test-operator")
        await eventually(lambda: self.world.pool.fetchval(
            "SELECT count(*) FROM reseller_tokens WHERE token_id = $1", issued.token_id),
            within=30)  # fmt: skip
        return issued

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.api),
            base_url=f"http://dashboard{PREFIX}",
            headers=headers,
        )

    async def sms_row(self, to: str, body: str, at: datetime, iccid: str | None = None) -> str:
        """An SMS as the inbound_sms projection would have it (another flow)."""
        message_id = f"m-{to}-{at.timestamp()}"
        await self.world.pool.execute(
            "INSERT INTO inbound_sms (message_id, received_at, gateway_id, port, sender, "
            "to_number, iccid, body) VALUES ($1, $2, 'gw-1', '1.01', '+15557770000', $3, $4, $5)",
            message_id, at, to, iccid, body,
        )  # fmt: skip
        return message_id


@contextlib.asynccontextmanager
async def portal_world(
    settings: Settings, kafka_bootstrap: str, api: ResellerApiSettings = GENEROUS
) -> AsyncIterator[PortalWorld]:
    async with webhook_world(settings, kafka_bootstrap) as world:
        projections = (
            ResellerTokensProjection(),
            AttemptsProjection(),
            OperatorAuditProjection(),
            InboundSmsProjection(),
        )
        async with projecting(
            projections, bootstrap=kafka_bootstrap, kafka=world.settings.kafka,
            pool=world.pool, bus=world.bus,
        ):  # fmt: skip
            clock = SystemClock()
            portal = build_portal(
                world.commands, box=world.box, webhooks=world.settings.webhooks, settings=api,
                clock=clock, csrf_secret=secrets.token_bytes(32),
            )  # fmt: skip
            site = FastAPI()  # mounted where the dashboard mounts it
            site.mount(PREFIX, create_reseller_api(portal))
            yield PortalWorld(world, ResellerTokens(world.commands, clock), site)

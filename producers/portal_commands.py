"""A reseller's own requests (its API and portal) → the operator's reseller commands, scoped.

Every method takes the caller's reseller id from its token, never from the request, and answers
``NotFound`` for an endpoint of another reseller exactly as for one that does not exist. The
events name the token as the actor (``reseller:<id>/<token name>``), so the operator audit
lists them beside the operators' own commands. Pausing is a ``webhook.endpoint_disabled`` the
reseller asked for: deliveries are then kept unattempted (``skipped``) for ``recover``.

``test_send`` is the one synchronous effect: a signed ``webhook.test`` POST to the endpoint,
answered with the endpoint's own answer (status, latency, the start of its body).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from events.envelope import new_ref
from events.reseller import WebhookEndpointDisabled
from infra.clock import Clock
from infra.settings import WebhookSettings
from infra.webhook_sender import AttemptResult, EndpointTarget, WebhookSender
from infra.webhook_signing import SecretUnsealError
from policies.webhook_format import iso
from producers.reseller_commands import (
    PRODUCER,
    CommandRejected,
    IssuedSecret,
    NotFound,
    Reenabled,
    ResellerCommands,
)
from projections import portal_queries as queries
from projections.portal_queries import EndpointView

TEST_EVENT = "webhook.test"
PAUSED_BY = "paused by "  # + the actor: the operator alert skips what a reseller paused


class SigningEndpoint(Protocol):
    @property
    def target(self) -> EndpointTarget: ...


class SigningTargets(Protocol):
    """Where the test send finds an endpoint's URL and secrets: the webhook flow's directory
    (``consumers/webhooks/targets.EndpointDirectory``), handed in by whoever builds the portal."""

    async def get(self, endpoint_id: str, now: datetime) -> SigningEndpoint | None: ...

    def forget(self, endpoint_id: str) -> None: ...


@dataclass(frozen=True)
class EndpointAnswer:
    message_id: str
    outcome: str
    status_code: int | None
    latency_ms: float
    answer: str | None
    error: str | None


class PortalCommands:
    def __init__(
        self,
        commands: ResellerCommands,
        *,
        directory: SigningTargets,
        webhooks: WebhookSettings,
        clock: Clock,
    ) -> None:
        self.commands = commands
        self.pool = commands.pool
        self._directory = directory
        self._webhooks = webhooks
        self._clock = clock

    async def _own(self, reseller_id: str, endpoint_id: str) -> EndpointView:
        found = await queries.endpoint(self.pool, reseller_id, endpoint_id)
        if found is None:
            raise NotFound(f"no endpoint {endpoint_id!r}")
        return found

    async def add_endpoint(
        self, reseller_id: str, url: str, actor: str, event_types: list[str]
    ) -> IssuedSecret:
        return await self.commands.add_endpoint(reseller_id, url, actor, event_types=event_types)

    async def remove_endpoint(
        self, reseller_id: str, endpoint_id: str, actor: str, reason: str | None
    ) -> str:
        await self._own(reseller_id, endpoint_id)
        why = reason or "removed by the reseller"
        return await self.commands.remove_endpoint(reseller_id, endpoint_id, actor, why)

    async def rotate_secret(self, reseller_id: str, endpoint_id: str, actor: str) -> IssuedSecret:
        await self._own(reseller_id, endpoint_id)
        return await self.commands.rotate_secret(reseller_id, endpoint_id, actor)

    async def pause(self, reseller_id: str, endpoint_id: str, actor: str) -> str:
        endpoint = await self._own(reseller_id, endpoint_id)
        if not endpoint.enabled:
            raise CommandRejected(f"endpoint {endpoint_id!r} is not receiving already")
        event = WebhookEndpointDisabled.create(
            producer=PRODUCER, time=self._clock.now(), reseller_id=reseller_id,
            endpoint_id=endpoint_id, reason=PAUSED_BY + actor, ref=new_ref(),
            requested_by=actor,
        )  # fmt: skip
        await self.commands.emit(event)
        self._directory.forget(endpoint_id)
        return event.id

    async def resume(
        self, reseller_id: str, endpoint_id: str, actor: str, *, redeliver: bool
    ) -> Reenabled:
        await self._own(reseller_id, endpoint_id)
        return await self.commands.enable_endpoint(
            reseller_id, endpoint_id, actor, redeliver=redeliver
        )

    async def recover(
        self, reseller_id: str, actor: str, *, since: datetime, endpoint_id: str | None
    ) -> str:
        """Everything failed or skipped since ``since`` (to one endpoint, or all), once each."""
        if endpoint_id is not None:
            await self._own(reseller_id, endpoint_id)
        if since > self._clock.now():
            raise CommandRejected("since is in the future")
        return await self.commands.resend(
            reseller_id, actor, endpoint_id=endpoint_id, since=since, only_failed=True,
            reason="recover, asked by the reseller",
        )  # fmt: skip

    async def test_send(self, reseller_id: str, endpoint_id: str) -> EndpointAnswer:
        await self._own(reseller_id, endpoint_id)
        self._directory.forget(endpoint_id)
        now = self._clock.now()
        try:
            found = await self._directory.get(endpoint_id, now)
        except SecretUnsealError:
            raise CommandRejected("the endpoint's secret cannot be opened here") from None
        if found is None:
            raise NotFound(f"no endpoint {endpoint_id!r}")
        message_id = f"test_{new_ref()}"
        body = {
            "event_type": TEST_EVENT,
            "message_id": message_id,
            "created_at": iso(now),
            "data": {"endpoint_id": endpoint_id, "test": True},
        }
        encoded = json.dumps(body, separators=(",", ":")).encode()
        # a sender of its own: test sends are rare, and it closes its connections when done
        async with WebhookSender(self._webhooks, clock=self._clock) as sender:
            result: AttemptResult = await sender.deliver(found.target, message_id, encoded)
        return EndpointAnswer(
            message_id, result.outcome.value, result.status_code, result.latency_ms,
            result.answer, result.error,
        )  # fmt: skip

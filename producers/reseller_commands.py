"""Operator intents on resellers (dashboard API, CLI) → events on ``reseller.registry`` / ``sim.lifecycle``.

Checks what an operator would want refused (unknown reseller or endpoint, an endpoint URL the
SSRF guard refuses, a malformed ICCID, removing an endpoint without a reason), then emits and returns once Kafka acknowledged. A new
or rotated signing secret is returned here once, in clear, and only sealed anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import ValidationError

from events.envelope import Event, new_ref
from events.reseller import (
    ResellerCreated,
    WebhookEndpointAdded,
    WebhookEndpointEnabled,
    WebhookEndpointRemoved,
    WebhookResendRequested,
    WebhookSecretRotated,
)
from infra.bus import Bus
from infra.clock import Clock
from infra.settings import WebhookSettings
from infra.url_guard import UnsafeEndpoint, validate_endpoint_url
from infra.webhook_signing import SecretBox, generate_secret
from policies.rotation import RotationPolicy
from producers.resync import resync_reseller
from producers.sim_assignment import (
    Assignment,
    assignment_events,
    current_owners,
    parse_iccid_lines,
)
from projections.reseller_queries import (
    EndpointView,
    count_missed,
    get_endpoint,
    get_reseller,
    list_endpoints,
)

__all__ = ["Assignment", "parse_iccid_lines"]  # offered to the CLI and the dashboard

PRODUCER = "simfleet/commands"
MAX_REASON = 500
WEBHOOK_TYPES = (
    "sms.received",
    "number.online",
    "number.verification_failed",
    "sim.cancelled",
    "number.offline",
)


class CommandRejected(ValueError):
    """The request cannot be carried out as asked; the message says why (no secret in it)."""


class NotFound(CommandRejected):
    pass


@dataclass(frozen=True)
class IssuedSecret:
    """A signing secret shown once to the operator who asked; never logged or stored in clear."""

    reseller_id: str
    endpoint_id: str
    event_id: str
    secret: str = field(repr=False)
    previous_valid_until: datetime | None = None


@dataclass(frozen=True)
class Reenabled:
    event_id: str
    resend_event_id: str | None  # the redelivery of what it missed, if asked for
    missed: int  # failed or skipped deliveries since the trouble began
    missed_since: datetime


def _reason(text: str | None) -> str | None:
    return text.strip()[:MAX_REASON] if text and text.strip() else None


class ResellerCommands:
    def __init__(
        self,
        *,
        bus: Bus,
        pool: asyncpg.Pool,
        box: SecretBox,
        settings: WebhookSettings,
        clock: Clock,
    ) -> None:
        self.pool = pool
        self._bus = bus
        self._box = box
        self._settings = settings
        self._clock = clock

    async def _emit(self, cls: type[Event], **fields: Any) -> Event:
        try:
            event = cls.create(producer=PRODUCER, time=self._clock.now(), **fields)
        except ValidationError as err:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise CommandRejected(reasons) from None
        await self._bus.emit(event)
        return event

    async def emit(self, event: Event) -> None:
        """Publishes an event another command module built (the reseller portal's pause)."""
        await self._bus.emit(event)

    async def _known_reseller(self, reseller_id: str) -> None:
        if await get_reseller(self.pool, reseller_id) is None:
            raise NotFound(f"unknown reseller {reseller_id!r}")

    async def _known_endpoint(self, reseller_id: str, endpoint_id: str) -> None:
        await self._known_reseller(reseller_id)
        if endpoint_id not in {e.endpoint_id for e in await list_endpoints(self.pool, reseller_id)}:
            raise NotFound(f"reseller {reseller_id!r} has no endpoint {endpoint_id!r}")

    async def create_reseller(self, reseller_id: str, name: str, requested_by: str) -> str:
        if await get_reseller(self.pool, reseller_id) is not None:
            raise CommandRejected(f"reseller {reseller_id!r} exists")
        event = await self._emit(
            ResellerCreated, reseller_id=reseller_id, name=name, requested_by=requested_by
        )
        return event.id

    async def add_endpoint(
        self,
        reseller_id: str,
        url: str,
        requested_by: str,
        *,
        event_types: Sequence[str] = (),
        endpoint_id: str | None = None,
    ) -> IssuedSecret:
        await self._known_reseller(reseller_id)
        try:
            url = validate_endpoint_url(
                url,
                allow_http=self._settings.allow_http,
                allow_private=self._settings.allow_private,
                allowed_ports=self._settings.allowed_ports,
            )
        except UnsafeEndpoint as err:
            raise CommandRejected(str(err)) from None
        unknown = sorted(set(event_types) - set(WEBHOOK_TYPES))
        if unknown:
            raise CommandRejected(f"unknown event types {unknown}; known: {list(WEBHOOK_TYPES)}")
        endpoint_id = endpoint_id or f"ep_{new_ref()[:12]}"
        secret = generate_secret()
        event = await self._emit(
            WebhookEndpointAdded,
            reseller_id=reseller_id,
            endpoint_id=endpoint_id,
            url=url,
            event_types=tuple(event_types),
            sealed_secret=self._box.seal(secret),
            requested_by=requested_by,
        )
        return IssuedSecret(reseller_id, endpoint_id, event.id, secret)

    async def remove_endpoint(
        self, reseller_id: str, endpoint_id: str, requested_by: str, reason: str | None
    ) -> str:
        """Destructive (the endpoint receives nothing more): the operator must say why."""
        reason = _reason(reason)
        if reason is None:
            raise CommandRejected("removing an endpoint needs a reason")
        await self._known_endpoint(reseller_id, endpoint_id)
        event = await self._emit(
            WebhookEndpointRemoved,
            reseller_id=reseller_id,
            endpoint_id=endpoint_id,
            ref=new_ref(),
            requested_by=requested_by,
            reason=reason,
        )
        return event.id

    async def rotate_secret(
        self, reseller_id: str, endpoint_id: str, requested_by: str, reason: str | None = None
    ) -> IssuedSecret:
        """The new secret signs at once; the previous one too, for ``rotation_overlap_s``."""
        await self._known_endpoint(reseller_id, endpoint_id)
        secret = generate_secret()
        until = self._clock.now() + timedelta(seconds=self._settings.rotation_overlap_s)
        event = await self._emit(
            WebhookSecretRotated,
            reseller_id=reseller_id,
            endpoint_id=endpoint_id,
            sealed_secret=self._box.seal(secret),
            previous_valid_until=until,
            ref=new_ref(),
            requested_by=requested_by,
            reason=_reason(reason),
        )
        return IssuedSecret(reseller_id, endpoint_id, event.id, secret, until)

    def missed_since(self, endpoint: EndpointView) -> datetime:
        """From when its deliveries count as missed: the start of the failures (or the disable),
        less the age a delivery may reach, so messages that began just before it count too."""
        start = endpoint.failing_since or endpoint.disabled_at or self._clock.now()
        return start - timedelta(seconds=self._settings.max_age_s)

    async def missed(self, reseller_id: str, endpoint_id: str) -> tuple[int, datetime]:
        """What re-enabling would offer to redeliver: how many, and since when."""
        endpoint = await self._disabled_endpoint(reseller_id, endpoint_id)
        since = self.missed_since(endpoint)
        return await count_missed(self.pool, endpoint_id, since), since

    async def _disabled_endpoint(self, reseller_id: str, endpoint_id: str) -> EndpointView:
        await self._known_endpoint(reseller_id, endpoint_id)
        endpoint = await get_endpoint(self.pool, reseller_id, endpoint_id)
        if endpoint is None:
            raise NotFound(f"reseller {reseller_id!r} has no endpoint {endpoint_id!r}")
        if endpoint.enabled:
            raise CommandRejected(f"endpoint {endpoint_id!r} is enabled")
        return endpoint

    async def enable_endpoint(
        self, reseller_id: str, endpoint_id: str, requested_by: str, *, redeliver: bool
    ) -> Reenabled:
        """A disabled endpoint receives again; with ``redeliver`` the deliveries it missed
        (failed, or skipped while disabled) are sent again, in the same command."""
        endpoint = await self._disabled_endpoint(reseller_id, endpoint_id)
        since = self.missed_since(endpoint)
        missed = await count_missed(self.pool, endpoint_id, since)
        now, ref = self._clock.now(), new_ref()
        events: list[Event] = [
            WebhookEndpointEnabled.create(
                producer=PRODUCER, time=now, reseller_id=reseller_id, endpoint_id=endpoint_id,
                ref=ref, requested_by=requested_by,
            )
        ]  # fmt: skip
        if redeliver:
            events.append(
                WebhookResendRequested.create(
                    producer=PRODUCER, time=now, correlationid=events[0].id,
                    reseller_id=reseller_id, ref=f"enable:{ref}", endpoint_id=endpoint_id,
                    since=since, only_failed=True, requested_by=requested_by,
                )
            )  # fmt: skip
        await self._bus.emit_many(events)  # one partition (the reseller's): enabled, then resend
        resend_id = events[1].id if redeliver else None
        return Reenabled(events[0].id, resend_id, missed, since)

    async def resync(self, reseller_id: str, policy: RotationPolicy | None = None) -> int:
        """Re-sends ``number.online`` for the reseller's online numbers (as new deliveries)."""
        await self._known_reseller(reseller_id)
        return await resync_reseller(self.pool, self._bus, self._clock, reseller_id, policy=policy)

    async def assign_sims(
        self, reseller_id: str, iccids: Iterable[str], requested_by: str
    ) -> Assignment:
        await self._known_reseller(reseller_id)
        wanted = list(dict.fromkeys(i.strip() for i in iccids if i.strip()))
        owners = await current_owners(self.pool, wanted)
        events, errors = assignment_events(
            reseller_id,
            wanted,
            owners,
            self._clock.now(),
            requested_by=requested_by,
            producer=PRODUCER,
        )
        await self._bus.emit_many(events)
        return Assignment([e.data.iccid for e in events], errors)

    async def resend(
        self,
        reseller_id: str,
        requested_by: str,
        *,
        message_ids: Sequence[str] = (),
        endpoint_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        only_failed: bool = False,
        reason: str | None = None,
    ) -> str:
        """Starts a new attempt sequence for the matching deliveries (delivered ones too)."""
        await self._known_reseller(reseller_id)
        if not (message_ids or endpoint_id or since or until or only_failed):
            raise CommandRejected("name message ids, an endpoint, a time range or only_failed")
        event = await self._emit(
            WebhookResendRequested,
            reseller_id=reseller_id,
            ref=new_ref(),
            message_ids=tuple(message_ids),
            endpoint_id=endpoint_id,
            since=since,
            until=until,
            only_failed=only_failed,
            requested_by=requested_by,
            reason=_reason(reason),
        )
        return event.id

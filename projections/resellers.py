"""Resellers: ``resellers``, ``reseller_webhooks``, ``reseller_sims``.

Reads ``reseller.registry`` (reseller.created, webhook.endpoint_added/removed/disabled/enabled,
webhook.endpoint_failing/recovered (health), webhook.secret_rotated) and ``sim.reseller_assigned`` on ``sim.lifecycle``. Secrets are kept
sealed, as the events carry them. The two topics interleave in any order (live and in a
replay), so a reseller row is stubbed by whichever of its events comes first and completed
by ``reseller.created``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never, cast

import asyncpg

from events.reseller import (
    ResellerCreated,
    ResellerRegistryEvent,
    ResellerTokenIssued,
    ResellerTokenRevoked,
    WebhookEndpointAdded,
    WebhookEndpointDisabled,
    WebhookEndpointEnabled,
    WebhookEndpointFailing,
    WebhookEndpointRecovered,
    WebhookEndpointRemoved,
    WebhookResendRequested,
    WebhookSecretRotated,
)
from events.sim import SimLifecycleEvent, SimResellerAssigned
from events.topics import RESELLER_REGISTRY, SIM_LIFECYCLE, Topic
from projections.batches import Record
from projections.sim_families import SIM_OUTCOMES, SIM_REQUESTS

UPSERT_RESELLER = """
INSERT INTO resellers (id, name, created_at) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, created_at = EXCLUDED.created_at
"""
STUB_RESELLER = """
INSERT INTO resellers (id, name, created_at) VALUES ($1, $1, $2) ON CONFLICT (id) DO NOTHING
"""
UPSERT_ENDPOINT = """
INSERT INTO reseller_webhooks (endpoint_id, reseller_id, url, sealed_secret, event_types, enabled,
    created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (endpoint_id) DO UPDATE SET
    reseller_id = EXCLUDED.reseller_id, url = EXCLUDED.url, sealed_secret = EXCLUDED.sealed_secret,
    previous_sealed_secret = NULL, previous_valid_until = NULL, event_types = EXCLUDED.event_types,
    enabled = EXCLUDED.enabled, health = 'healthy', disabled_reason = NULL, disabled_at = NULL,
    failing_since = NULL, health_error = NULL, updated_at = now()
"""
DELETE_ENDPOINT = "DELETE FROM reseller_webhooks WHERE endpoint_id = $1 AND reseller_id = $2"
# the guard keeps a re-applied rotation from making the new secret its own "previous"
ROTATE_ENDPOINT = """
UPDATE reseller_webhooks SET previous_sealed_secret = sealed_secret, sealed_secret = $3,
    previous_valid_until = $4, updated_at = now()
WHERE endpoint_id = $1 AND reseller_id = $2 AND sealed_secret <> $3
"""
DISABLE_ENDPOINT = """
UPDATE reseller_webhooks SET enabled = false, health = 'disabled', disabled_reason = $3,
    disabled_at = $4, failing_since = coalesce($5, failing_since), updated_at = now()
WHERE endpoint_id = $1 AND reseller_id = $2
"""
ENABLE_ENDPOINT = """
UPDATE reseller_webhooks SET enabled = true, health = 'healthy', disabled_reason = NULL,
    disabled_at = NULL, failing_since = NULL, health_error = NULL, updated_at = now()
WHERE endpoint_id = $1 AND reseller_id = $2
"""
# health moves only while the endpoint receives: a disabled one stays disabled until enabled
MARK_FAILING = """
UPDATE reseller_webhooks SET health = 'failing', failing_since = $3, health_error = $4,
    updated_at = now()
WHERE endpoint_id = $1 AND reseller_id = $2 AND enabled
"""
MARK_RECOVERED = """
UPDATE reseller_webhooks SET health = 'healthy', failing_since = NULL, health_error = NULL,
    updated_at = now()
WHERE endpoint_id = $1 AND reseller_id = $2 AND enabled AND failing_since = $3
"""
ASSIGN_SIMS = """
INSERT INTO reseller_sims (iccid, reseller_id, assigned_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
ON CONFLICT (iccid) DO UPDATE SET reseller_id = EXCLUDED.reseller_id,
    assigned_at = EXCLUDED.assigned_at
WHERE reseller_sims.assigned_at <= EXCLUDED.assigned_at
"""
STUB_RESELLERS = """
INSERT INTO resellers (id, name, created_at)
SELECT DISTINCT ON (r) r, r, t FROM unnest($1::text[], $2::timestamptz[]) AS x(r, t)
ORDER BY r, t
ON CONFLICT (id) DO NOTHING
"""


class ResellersProjection:
    name = "resellers"
    topics: tuple[Topic, ...] = (RESELLER_REGISTRY, SIM_LIFECYCLE)
    tables: tuple[str, ...] = ("resellers", "reseller_webhooks", "reseller_sims")

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        assignments: dict[str, SimResellerAssigned] = {}
        for r in records:
            # the runner decodes each topic with its own decoder: every event is of its union
            event = cast(ResellersTopicsEvent, r.event)
            match read(event):
                case SimResellerAssigned() as e:
                    assignments[e.data.iccid] = e  # the last one in the batch wins, as in order
                case None:
                    pass
                case e:
                    await apply_registry_event(conn, e)
        if assignments:
            await assign(conn, list(assignments.values()))


RegistryEvent = (
    ResellerCreated
    | WebhookEndpointAdded
    | WebhookEndpointRemoved
    | WebhookSecretRotated
    | WebhookEndpointDisabled
    | WebhookEndpointEnabled
    | WebhookEndpointFailing
    | WebhookEndpointRecovered
)


ResellersTopicsEvent = ResellerRegistryEvent | SimLifecycleEvent


def read(event: ResellersTopicsEvent) -> RegistryEvent | SimResellerAssigned | None:
    """The events this projection applies; None for the rest of its topics. Exhaustive: a new
    type on either topic fails the type check here."""
    match event:
        case (
            ResellerCreated()
            | WebhookEndpointAdded()
            | WebhookEndpointRemoved()
            | WebhookSecretRotated()
            | WebhookEndpointDisabled()
            | WebhookEndpointEnabled()
            | WebhookEndpointFailing()
            | WebhookEndpointRecovered()
            | SimResellerAssigned()
        ):
            return event
        case (
            WebhookResendRequested()  # the dispatcher's, and the audit's
            | ResellerTokenIssued()  # the token projection's
            | ResellerTokenRevoked()
        ):
            return None
        case _ if isinstance(event, (SIM_REQUESTS, SIM_OUTCOMES)):
            return None  # the SIM's own story: the sims projection's
        case _:
            assert_never(event)


async def apply_registry_event(conn: asyncpg.Connection, event: RegistryEvent) -> None:
    """Registry events are a handful a day: one statement each, in order."""
    match event:
        case ResellerCreated(data=d):
            await conn.execute(UPSERT_RESELLER, d.reseller_id, d.name, event.time)
        case WebhookEndpointAdded(data=d):
            await conn.execute(STUB_RESELLER, d.reseller_id, event.time)
            await conn.execute(
                UPSERT_ENDPOINT,
                d.endpoint_id,
                d.reseller_id,
                d.url,
                d.sealed_secret,
                list(d.event_types),
                d.enabled,
                event.time,
            )
        case WebhookEndpointRemoved(data=d):
            await conn.execute(DELETE_ENDPOINT, d.endpoint_id, d.reseller_id)
        case WebhookSecretRotated(data=d):
            await conn.execute(
                ROTATE_ENDPOINT,
                d.endpoint_id,
                d.reseller_id,
                d.sealed_secret,
                d.previous_valid_until,
            )
        case WebhookEndpointDisabled(data=d):
            await conn.execute(
                DISABLE_ENDPOINT, d.endpoint_id, d.reseller_id, d.reason, event.time,
                d.failing_since,
            )  # fmt: skip
        case WebhookEndpointEnabled(data=d):
            await conn.execute(ENABLE_ENDPOINT, d.endpoint_id, d.reseller_id)
        case WebhookEndpointFailing(data=d):
            error = d.last_error if d.last_status_code is None else f"HTTP {d.last_status_code}"
            await conn.execute(MARK_FAILING, d.endpoint_id, d.reseller_id, d.since, error)
        case WebhookEndpointRecovered(data=d):
            await conn.execute(MARK_RECOVERED, d.endpoint_id, d.reseller_id, d.failing_since)


async def assign(conn: asyncpg.Connection, events: Sequence[SimResellerAssigned]) -> None:
    resellers = [e.data.reseller_id for e in events]
    times = [e.time for e in events]
    await conn.execute(STUB_RESELLERS, resellers, times)
    await conn.execute(ASSIGN_SIMS, [e.data.iccid for e in events], resellers, times)

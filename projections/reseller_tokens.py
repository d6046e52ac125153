"""Reseller API tokens: ``reseller_tokens``.

Reads ``reseller.registry`` (reseller.token_issued, reseller.token_revoked). Holds each token's
SHA-256, never the token; a revocation stays (the token never works again, even re-issued
events cannot bring it back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never, cast

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
from events.topics import RESELLER_REGISTRY, Topic
from projections.batches import Record

INSERT_ISSUED = """
INSERT INTO reseller_tokens (token_id, reseller_id, name, scope, token_hash, expires_at,
    issued_by, issued_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (token_id) DO NOTHING
"""
MARK_REVOKED = """
UPDATE reseller_tokens SET revoked_at = $3, revoked_by = $4
WHERE token_id = $1 AND reseller_id = $2 AND revoked_at IS NULL
"""


Statement = tuple[str, tuple[Any, ...]]  # the SQL an event runs and its arguments


def statement(event: ResellerRegistryEvent) -> Statement | None:
    """What one registry event changes in ``reseller_tokens``; None: not a token's event.
    Exhaustive: a new type on the topic fails the type check here."""
    match event:
        case ResellerTokenIssued(data=d):
            return INSERT_ISSUED, (
                d.token_id, d.reseller_id, d.name, d.scope, d.token_hash, d.expires_at,
                d.requested_by, event.time,
            )  # fmt: skip
        case ResellerTokenRevoked(data=d):
            return MARK_REVOKED, (d.token_id, d.reseller_id, event.time, d.requested_by)
        case (
            ResellerCreated()
            | WebhookEndpointAdded()
            | WebhookEndpointRemoved()
            | WebhookResendRequested()
            | WebhookSecretRotated()
            | WebhookEndpointDisabled()
            | WebhookEndpointFailing()
            | WebhookEndpointRecovered()
            | WebhookEndpointEnabled()
        ):
            return None
        case _:
            assert_never(event)


class ResellerTokensProjection:
    name = "reseller_tokens"
    topics: tuple[Topic, ...] = (RESELLER_REGISTRY,)
    tables: tuple[str, ...] = ("reseller_tokens",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        for r in records:
            # the runner decodes this topic with its own decoder: every event is of its union
            change = statement(cast(ResellerRegistryEvent, r.event))
            if change is not None:
                await conn.execute(change[0], *change[1])

"""Operator lookups at the carrier (Helix): a subscriber's details, by subscription id or by ICCID
(its ``mobility_subscription_id`` in ``sims``), and the carrier's reason-code table.

Read-only at the carrier, yet each is a real call to an external system: ``HelixClient`` audits it
like every call (a redacted ``helix.api_called`` on ``helix.calls``, so it shows in the Helix log),
and the answer is redacted again here with every configured secret before anything shows it.
Carrier failures become the operator's 404/502/503 with the (redacted) reason, never a 500.
Answers are the carrier's as received (no field dropped by a model); each lookup is a run of its
own (``run_id``), which its Helix log row names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import HTTPException
from pydantic import AliasChoices, BaseModel, Field, field_validator

from dashboard.deps import Dashboard
from events.envelope import new_ref
from infra.helix.client import HelixClient
from infra.helix.errors import HelixError, HelixRejected
from infra.redaction import redact
from projections import sim_target_queries

DETAILS_OPERATION = "dashboard_details"  # the Helix log's operation: told apart from the workers'
NOT_AVAILABLE = "The carrier (Helix) client is not available in this process: lookups are off."
log = structlog.get_logger(__name__)


class DetailsQuery(BaseModel):
    subscription_id: str = Field(
        default="",
        max_length=64,
        description="give this or iccid",
        validation_alias=AliasChoices("subscription_id", "mobilitySubscriptionId"),
    )
    iccid: str = Field(default="", max_length=32, description="looked up in the SIM table")

    @field_validator("subscription_id", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value  # the carrier's ids are numbers


@dataclass(frozen=True)
class CarrierAnswer:
    """A lookup's whole answer as the carrier sent it (redacted), and the run that asked."""

    answer: Any
    run_id: str


class DetailsAnswer(BaseModel):
    subscription_id: str
    iccid: str | None = Field(description="the SIM holding the subscription, where known")
    details: dict[str, Any] = Field(description="the carrier's answer, secrets masked")


class ReasonCodesAnswer(BaseModel):
    reason_codes: list[dict[str, Any]] = Field(description="the carrier's table, secrets masked")


def carrier(dashboard: Dashboard) -> HelixClient:
    if dashboard.helix is None:
        raise HTTPException(503, NOT_AVAILABLE)
    return dashboard.helix


async def details(dashboard: Dashboard, query: DetailsQuery, actor: str) -> DetailsAnswer:
    subscription_id, iccid = await _subscription(dashboard, query)
    row, _ = await _details(dashboard, subscription_id, iccid, actor, f"helix-lookup:{new_ref()}")
    answer = {"subscription_id": subscription_id, "iccid": iccid, "details": row}
    return DetailsAnswer.model_validate(redact(answer, dashboard.secrets))


async def query(dashboard: Dashboard, query: DetailsQuery, actor: str) -> CarrierAnswer:
    """The original's ``/api/helix-query``: the carrier's whole details answer, as received."""
    subscription_id, iccid = await _subscription(dashboard, query)
    run_id = f"helix-query:{new_ref()}"
    _, answer = await _details(dashboard, subscription_id, iccid, actor, run_id)
    return CarrierAnswer(redact(answer, dashboard.secrets), run_id)


async def _details(
    dashboard: Dashboard, subscription_id: str, iccid: str | None, actor: str, run_id: str
) -> tuple[dict[str, Any], Any]:
    helix = carrier(dashboard)
    log.info("helix_lookup", operation=DETAILS_OPERATION, actor=actor, iccid=iccid, run_id=run_id)
    with carrier_errors(dashboard.secrets), structlog.contextvars.bound_contextvars(run_id=run_id):
        return await helix.details_answer(subscription_id, iccid=iccid, operation=DETAILS_OPERATION)


async def reason_codes(dashboard: Dashboard, actor: str) -> ReasonCodesAnswer:
    helix = carrier(dashboard)
    log.info("helix_lookup", operation="reason_codes", actor=actor)
    with carrier_errors(dashboard.secrets):
        rows = await helix.reason_codes()
    table = [row.model_dump(mode="json", by_alias=True) for row in rows]
    return ReasonCodesAnswer(reason_codes=redact(table, dashboard.secrets))


async def _subscription(dashboard: Dashboard, query: DetailsQuery) -> tuple[str, str | None]:
    """(subscription id, ICCID if known) from exactly one of the two."""
    subscription_id, iccid = query.subscription_id.strip(), query.iccid.strip()
    if bool(subscription_id) == bool(iccid):
        raise HTTPException(400, "Give either a subscription id or an ICCID (one of them).")
    if subscription_id:
        ref = await sim_target_queries.subscription_ref(
            dashboard.pool, subscription_id=subscription_id
        )
        return subscription_id, ref.iccid if ref else None
    ref = await sim_target_queries.subscription_ref(dashboard.pool, iccid=iccid)
    if ref is None:
        raise HTTPException(404, f"no SIM with ICCID {iccid}")
    if not ref.mobility_subscription_id:
        raise HTTPException(409, f"SIM {iccid} has no carrier subscription yet: nothing to ask.")
    return ref.mobility_subscription_id, iccid


@contextlib.contextmanager
def carrier_errors(secrets: frozenset[str]) -> Iterator[None]:
    """The carrier's refusals and outages as the operator's HTTP errors, secrets masked."""
    try:
        yield
    except HelixRejected as err:
        if err.status_code == 404:
            raise HTTPException(404, redact(f"{err}.", secrets)) from err
        raise HTTPException(502, redact(f"Helix refused the lookup: {err}.", secrets)) from err
    except HelixError as err:
        message = f"Helix did not answer: {err}. Try again later; the Helix log has the call."
        raise HTTPException(503, redact(message, secrets)) from err

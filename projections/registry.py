"""Every projection simfleet keeps, by name (used by the projector process and replay)."""

from __future__ import annotations

from projections.archive import ArchiveProjection
from projections.attempts import AttemptsProjection
from projections.audit import OperatorAuditProjection
from projections.deliveries import DeliveriesProjection
from projections.gateways import GatewaysProjection
from projections.helix_log import HelixLogProjection
from projections.reseller_tokens import ResellerTokensProjection
from projections.resellers import ResellersProjection
from projections.runner import Projection
from projections.sims import SimsProjection
from projections.sms import InboundSmsProjection


def all_projections() -> dict[str, Projection]:
    found: list[Projection] = [
        ArchiveProjection(),
        InboundSmsProjection(),
        GatewaysProjection(),
        ResellersProjection(),
        DeliveriesProjection(),
        SimsProjection(),
        HelixLogProjection(),
        OperatorAuditProjection(),
        ResellerTokensProjection(),
        AttemptsProjection(),
    ]
    return {p.name: p for p in found}

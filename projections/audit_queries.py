"""Read queries for the operator audit (dashboard page, ``/api/audit``): who did what, when.

Reads ``operator_audit`` (owned by ``projections.audit``). Newest first, keyset-paginated
(``older`` is ``<requested_at ISO>|<command_id>|<action>`` of the previous page's last row);
filters by actor, channel, action and by SIM (any command whose subjects hold the ICCID); a
reseller's own page (the portal) is every row of its tokens: changes and uses.
A command's subjects are listed up to ``SUBJECTS_SHOWN``; ``subject_count`` says how many.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from pydantic import computed_field

from infra.actors import CHANNELS, reseller_actor
from projections.audit import ACTIONS
from projections.read_models import PAGE_SIZE, View

SUBJECTS_SHOWN = 50
AUDIT_ACTIONS: tuple[str, ...] = (
    "import",
    "finalize",
    *dict.fromkeys(ACTIONS.values()),
)
AUDIT_CHANNELS: tuple[str, ...] = (*CHANNELS, "other")
# the registry's commands are about a reseller: their subjects are reseller ids, not ICCIDs
RESELLER_ACTIONS = frozenset(
    {
        "create-reseller",
        "add-endpoint",
        "remove-endpoint",
        "rotate-secret",
        "resend",
        "pause-endpoint",
        "enable-endpoint",
        "issue-token",
        "revoke-token",
        "use-token",
    }
)

AUDIT_PAGE = """
SELECT command_id, action, actor, channel, requested_at, reason, target, events,
       subjects[1:$8] AS subjects, cardinality(subjects) AS subject_count
FROM operator_audit
WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR channel = $2)
  AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR subjects @> ARRAY[$4::text])
  AND ($5::timestamptz IS NULL OR (requested_at, command_id, action) < ($5, $6::text, $7::text))
  AND ($10::text IS NULL OR starts_with(actor, $10))
ORDER BY requested_at DESC, command_id DESC, action DESC LIMIT $9
"""
AUDIT_ACTORS = "SELECT DISTINCT actor FROM operator_audit ORDER BY actor LIMIT 500"


class AuditRow(View):
    command_id: str
    action: str
    actor: str
    channel: str
    requested_at: datetime
    reason: str | None
    target: str | None
    events: int
    subjects: tuple[str, ...]
    subject_count: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def subject_kind(self) -> Literal["sim", "reseller"]:
        return "reseller" if self.action in RESELLER_ACTIONS else "sim"


class AuditPage(View):
    rows: tuple[AuditRow, ...]
    older: str | None


async def audit_page(
    pool: asyncpg.Pool,
    *,
    actor: str | None = None,
    channel: str | None = None,
    action: str | None = None,
    iccid: str | None = None,
    older: str | None = None,
    limit: int = PAGE_SIZE,
    reseller_id: str | None = None,
) -> AuditPage:
    """``reseller_id``: only what that reseller's tokens did (its changes and its uses)."""
    at, command_id, older_action = _cursor(older)
    subject = iccid or None
    own: str | None = None
    if reseller_id is not None:
        # an actor names the reseller, the subjects hold it (indexed); ids have no '/'
        subject, own, channel = reseller_id, reseller_actor(reseller_id, ""), "reseller"
    args: tuple[Any, ...] = (actor or None, channel or None, action or None, subject)
    args += (at, command_id, older_action, SUBJECTS_SHOWN, limit + 1, own)
    found = [AuditRow.model_validate(dict(r)) for r in await pool.fetch(AUDIT_PAGE, *args)]
    last = found[limit - 1] if len(found) > limit else None
    return AuditPage(
        rows=tuple(found[:limit]),
        older=f"{last.requested_at.isoformat()}|{last.command_id}|{last.action}" if last else None,
    )


async def audit_actors(pool: asyncpg.Pool) -> tuple[str, ...]:
    return tuple(r["actor"] for r in await pool.fetch(AUDIT_ACTORS))


def _cursor(older: str | None) -> tuple[datetime | None, str | None, str | None]:
    """A malformed cursor is the first page, not an error: it came from a URL."""
    if not older:
        return None, None, None
    at, _, rest = older.partition("|")
    command_id, _, action = rest.rpartition("|")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None, None, None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), command_id, action

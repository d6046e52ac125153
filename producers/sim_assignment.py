"""Assigning SIMs to a reseller: the ``sim.reseller_assigned`` events one command makes, and
reading ICCIDs from an operator's file. Published by ``producers.reseller_commands``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from events.sim import SimResellerAssigned

# where each SIM is now: the reseller (and number) an assignment takes it from
CURRENT_OWNERS = """
SELECT s.iccid, coalesce(rs.reseller_id, s.reseller_id) AS reseller_id, s.current_number
FROM sims s LEFT JOIN reseller_sims rs ON rs.iccid = s.iccid
WHERE s.iccid = ANY($1::text[])
"""


@dataclass(frozen=True)
class Assignment:
    assigned: list[str]
    errors: list[str]


async def current_owners(pool: asyncpg.Pool, iccids: Sequence[str]) -> dict[str, asyncpg.Record]:
    return {r["iccid"]: r for r in await pool.fetch(CURRENT_OWNERS, iccids)}


def assignment_events(
    reseller_id: str,
    wanted: Sequence[str],
    owners: Mapping[str, asyncpg.Record],
    now: datetime,
    *,
    requested_by: str,
    producer: str,
) -> tuple[list[SimResellerAssigned], list[str]]:
    """One event per ICCID, naming the reseller (and number) it leaves; a malformed ICCID is
    an error line instead."""
    events: list[SimResellerAssigned] = []
    errors: list[str] = []
    # one ref per command: moving a SIM A → B → A must be three facts, not a duplicate of
    # the first (the archive would drop it and a rebuild would leave the SIM with B)
    command = f"assign:{reseller_id}:{now.isoformat()}"
    for iccid in wanted:
        ref = f"{command}:{iccid}"
        fields = {"iccid": iccid, "reseller_id": reseller_id, "ref": ref, "command": command}
        if (owner := owners.get(iccid)) is not None:  # the number leaves its reseller
            fields |= {
                "previous_reseller_id": owner["reseller_id"],
                "number": owner["current_number"],
            }
        try:
            event = SimResellerAssigned.create(
                producer=producer, time=now, requested_by=requested_by, **fields
            )
        except ValidationError:
            errors.append(f"{iccid[:30]!r}: not an ICCID (19-20 digits)")
        else:
            events.append(event)
    return events, errors


def parse_iccid_lines(text: str) -> tuple[list[str], list[str]]:
    """ICCIDs from a file: one per line (or the first CSV column); ``#`` comments and a header
    line are skipped. Returns (iccids, "line N: reason" errors)."""
    iccids, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].split(",", 1)[0].strip().strip('"')
        if not value or (number == 1 and value.lower() == "iccid"):
            continue
        if not value.isdigit() or not 19 <= len(value) <= 20:
            errors.append(f"line {number}: not an ICCID (19-20 digits): {value[:30]!r}")
        else:
            iccids.append(value)
    return iccids, errors

"""SIM read queries for the dashboard and CLI: plain SQL over ``sims`` / ``sim_numbers`` →
small frozen models. Owns no table (``projections.sims`` writes them).

Pages are keyset-paginated on ``iccid`` (``Page.after``), never OFFSET, so the last page of
100,000 SIMs costs what the first does.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

MAX_PAGE_SIZE = 500
SIM_COLUMNS = """
iccid, imei, status, mobility_subscription_id, current_number, number_status, reseller_id,
gateway_id, port, activated_at, last_error, rotation_status, last_rotated_at, rotation_count,
updated_at
"""
SELECT_SIM = f"SELECT {SIM_COLUMNS} FROM sims WHERE iccid = $1"  # noqa: S608 (constant)
# $1 status, $2 reseller, $3 ICCID or number prefix (digits), $4 after ICCID, $5 limit
FILTERED = """
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reseller_id = $2)
  AND ($3::text IS NULL OR iccid LIKE $3 || '%' OR current_number LIKE '+' || $3 || '%')
"""
SELECT_PAGE = f"""
SELECT {SIM_COLUMNS} FROM sims {FILTERED} AND ($4::text IS NULL OR iccid > $4)
ORDER BY iccid LIMIT $5
"""  # noqa: S608 (constants only)
COUNT_MATCHES = f"SELECT count(*) FROM sims {FILTERED}"  # noqa: S608 (constant)
SELECT_NUMBERS = """
SELECT e164, source, valid_from, valid_to, verification_status, sent_at, verified_at, failed_at
FROM sim_numbers WHERE iccid = $1 ORDER BY valid_from DESC, id DESC
"""


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class SimView(View):
    iccid: str
    imei: str | None
    status: str
    mobility_subscription_id: str | None
    current_number: str | None
    number_status: str | None
    reseller_id: str | None
    gateway_id: str | None
    port: str | None
    activated_at: datetime | None
    last_error: str | None
    rotation_status: str
    last_rotated_at: datetime | None
    rotation_count: int
    updated_at: datetime


class SimNumberView(View):
    """One number a SIM has had; the verification code is not shown."""

    e164: str
    source: str
    valid_from: datetime
    valid_to: datetime | None
    verification_status: str
    sent_at: datetime | None
    verified_at: datetime | None
    failed_at: datetime | None


class SimFilters(View):
    status: str | None = None
    reseller_id: str | None = None
    search: str | None = Field(default=None, description="ICCID or number prefix")

    def search_digits(self) -> str | None:
        digits = "".join(ch for ch in self.search or "" if ch.isdigit())
        return digits or None


class Page(View):
    after: str | None = Field(default=None, description="the last ICCID of the previous page")
    size: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)


class SimsPage(View):
    items: tuple[SimView, ...]
    total: int
    next_after: str | None = Field(description="pass as Page.after for the next page")


async def sim_by_iccid(pool: asyncpg.Pool, iccid: str) -> SimView | None:
    row = await pool.fetchrow(SELECT_SIM, iccid)
    return SimView(**dict(row)) if row is not None else None


async def sims_page(pool: asyncpg.Pool, filters: SimFilters, page: Page) -> SimsPage:
    where = (filters.status, filters.reseller_id, filters.search_digits())
    rows = await pool.fetch(SELECT_PAGE, *where, page.after, page.size + 1)
    total = await pool.fetchval(COUNT_MATCHES, *where)
    items = tuple(SimView(**dict(r)) for r in rows[: page.size])
    more = len(rows) > page.size
    return SimsPage(items=items, total=total, next_after=items[-1].iccid if more else None)


async def sim_numbers_of(pool: asyncpg.Pool, iccid: str) -> list[SimNumberView]:
    return [SimNumberView(**dict(r)) for r in await pool.fetch(SELECT_NUMBERS, iccid)]

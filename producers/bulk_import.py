"""Bulk import: a SIM sheet (CSV or JSON) → ``sim.activation_requested`` (+ ``sim.reseller_assigned``).

Formats (EXTERNAL_APIS §4): CSV with a header naming at least ``iccid`` and ``imei`` (the
original sheet: ``iccid,imei,reseller_id,status``; optional ``gateway_id,port``; ``,`` ``;`` or
tab separated; UTF-8, a BOM is fine), or JSON ``{"sims": [{"iccid", "imei", "reseller_id"}]}``
or a bare list. Only rows whose ``status`` is empty or ``pending`` are imported, the others
are reported as skipped. A bad row (ICCID/IMEI length or Luhn, a cell that is not UTF-8, …)
is reported with its line (CSV) or item number (JSON) and the good rows go on; an ICCID seen
twice is imported once and the repeat reported. A file that cannot be read as a whole (over
the size limit, UTF-16, no header, broken JSON) raises ``ImportFileError``. The file is read by
``producers.sheet_files``, its rows judged by ``producers.sheet_rows``.

Each request's ref is ``import:<iccid>``, so importing the same sheet again publishes the same
event ids: the activation consumer answers from its ledger and nothing new happens downstream.
"""

from __future__ import annotations

import asyncio
import heapq
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from events.envelope import Event, new_ref
from events.sim import SimActivationRequested, SimResellerAssigned
from infra.actors import SYSTEM
from infra.bus import Bus
from infra.clock import Clock
from producers.sheet_files import MAX_BYTES, Cells, ImportFileError, fetch_source, sheet_cells
from producers.sheet_rows import (
    ParsedImport,
    RowCollector,
    RowIssue,
    RowRejected,
    SimRow,
    collect_rows,
    sim_row,
    status_skip_reason,
)

__all__ = [
    "MAX_BYTES",
    "ImportFileError",
    "ImportReport",
    "fetch_source",
    "import_sheet",
    "import_sims",
    "parse_rows",
    "requests_for",
]

PRODUCER = "simfleet/bulk_import"
EMIT_CHUNK = 500  # rows per Kafka round trip: progress stays live, memory stays flat
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ImportReport:
    parsed: ParsedImport
    accepted: Sequence[str] = ()  # ICCIDs whose activation was requested, in sheet order
    event_ids: tuple[str, ...] = field(default=(), repr=False)
    published: int | None = None  # events, where their ids were not kept (a streamed sheet)

    @property
    def events(self) -> int:
        return len(self.event_ids) if self.published is None else self.published

    def summary(self) -> str:
        p = self.parsed
        return (
            f"accepted {len(self.accepted)}, duplicates {len(p.duplicates)}, "
            f"skipped {len(p.skipped)} (status), rejected {len(p.rejected)}"
        )

    def issues(self) -> Iterator[str]:
        """Every row not imported, in sheet order: refused (rejected, duplicate) or skipped.

        Merged as it is read (each kind is already in sheet order): a page showing the first few
        hundred of a big sheet's ~400,000 makes only those, where ordering them all made every
        one at once and the garbage collector's walk over them held the GIL for most of a
        second (the bridge and the dashboard in that process stood still)."""
        p = self.parsed
        kinds = (("rejected", p.rejected), ("duplicate", p.duplicates), ("skipped", p.skipped))
        ordered = heapq.merge(*(_of_kind(kind, issues) for kind, issues in kinds))
        for line, kind, reason in ordered:
            yield f"{p.unit} {line}: {kind}: {reason}"

    def issue_count(self) -> int:
        p = self.parsed
        return len(p.rejected) + len(p.duplicates) + len(p.skipped)


def _of_kind(kind: str, issues: Iterable[RowIssue]) -> Iterator[tuple[int, str, str]]:
    return ((issue.line, kind, issue.reason) for issue in issues)


def parse_rows(
    data: bytes, filename_or_content_type: str, *, max_bytes: int = MAX_BYTES
) -> ParsedImport:
    """Reads a sheet; the hint (file name, URL or content type) says CSV or JSON, else the
    first byte does (``{`` or ``[`` is JSON)."""
    if len(data) > max_bytes:
        raise ImportFileError(f"the file has {len(data):,} bytes; the limit is {max_bytes:,}")
    fmt, cells = sheet_cells(io.BytesIO(data), filename_or_content_type)
    return collect_rows(fmt, cells)


def requests_for(
    row: SimRow, clock: Clock, requested_by: str, command: str | None = None
) -> list[Event]:
    """``ref`` is per row (re-importing a sheet repeats nothing); ``command`` names the import."""
    ref = f"import:{row.iccid}"
    request = SimActivationRequested.create(
        producer=PRODUCER,
        time=clock.now(),
        iccid=row.iccid,
        imei=row.imei,
        ref=ref,
        requested_by=requested_by,
        command=command,
        reseller_id=row.reseller_id,
        gateway_id=row.gateway_id,
        port=row.port,
    )
    if row.reseller_id is None:
        return [request]
    assigned = SimResellerAssigned.of(
        request,
        producer=PRODUCER,
        time=clock.now(),
        iccid=row.iccid,
        reseller_id=row.reseller_id,
        ref=ref,
        requested_by=requested_by,
        command=command,
    )
    return [request, assigned]


async def import_sims(
    parsed: ParsedImport,
    bus: Bus,
    clock: Clock,
    progress: Progress | None = None,
    *,
    requested_by: str = SYSTEM,
) -> ImportReport:
    """Publishes the parsed rows' requests (acknowledged by Kafka before returning).

    ``requested_by``: the actor (``infra.actors``); every row of one call is one command."""
    command = f"import:{new_ref()}"
    ids: list[str] = []
    total = len(parsed.rows)
    for start in range(0, total, EMIT_CHUNK):
        events = [
            e
            for row in parsed.rows[start : start + EMIT_CHUNK]
            for e in requests_for(row, clock, requested_by, command)
        ]
        await bus.emit_many(events)
        ids += [e.id for e in events]
        if progress is not None:
            progress(min(start + EMIT_CHUNK, total), total)
    return ImportReport(parsed, tuple(r.iccid for r in parsed.rows), tuple(ids))


async def import_sheet(
    source: IO[bytes], hint: str, bus: Bus, clock: Clock, *, requested_by: str = SYSTEM
) -> ImportReport:
    """``import_sims`` for a sheet in a (spooled) file, read in worker threads so the event loop
    keeps answering, and never whole in memory: a first pass checks every row (a file that
    cannot be read publishes nothing), the second publishes the good rows chunk by chunk."""
    checked = await asyncio.to_thread(_check_sheet, source, hint)
    source.seek(0)
    _fmt, cells = await asyncio.to_thread(sheet_cells, source, hint)
    command = f"import:{new_ref()}"
    published = 0
    while rows := await asyncio.to_thread(_next_rows, checked, cells, EMIT_CHUNK):
        # making an event (validation, its id's hash) costs more than reading its row
        events = await asyncio.to_thread(_requests, rows, clock, requested_by, command)
        await bus.emit_many(events)
        published += len(events)
    return ImportReport(checked.parsed(), checked.accepted, published=published)


def _requests(rows: list[SimRow], clock: Clock, requested_by: str, command: str) -> list[Event]:
    return [e for row in rows for e in requests_for(row, clock, requested_by, command)]


def _check_sheet(source: IO[bytes], hint: str) -> RowCollector:
    fmt, cells = sheet_cells(source, hint)
    collector = RowCollector(fmt)
    for line, found in cells:
        collector.add(line, found)
    return collector


def _next_rows(checked: RowCollector, cells: Cells, count: int) -> list[SimRow]:
    """The next ``count`` rows the first pass accepted, read again."""
    rows: list[SimRow] = []
    for line, found in cells:
        if isinstance(found, str) or status_skip_reason(found):
            continue
        try:
            row = sim_row(line, found)
        except RowRejected:
            continue
        if checked.accepted_on(row):
            rows.append(row)
            if len(rows) == count:
                break
    return rows

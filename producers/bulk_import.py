"""Bulk import: a SIM sheet (CSV or JSON) → ``sim.activation_requested`` (+ ``sim.reseller_assigned``).

Formats (EXTERNAL_APIS §4): CSV with a header naming at least ``iccid`` and ``imei`` (the
original sheet: ``iccid,imei,reseller_id,status``; optional ``gateway_id,port``; ``,`` ``;`` or
tab separated; UTF-8, a BOM is fine), or JSON ``{"sims": [{"iccid", "imei", "reseller_id"}]}``
or a bare list. Only rows whose ``status`` is empty or ``pending`` are imported, the others
are reported as skipped. A bad row (ICCID/IMEI length or Luhn, a cell that is not UTF-8, …)
is reported with its line (CSV) or item number (JSON) and the good rows go on; an ICCID seen
twice is imported once and the repeat reported. A file that cannot be read as a whole (over
the size limit, UTF-16, no header, broken JSON) raises ``ImportFileError``.

Each request's ref is ``import:<iccid>``, so importing the same sheet again publishes the same
event ids: the activation consumer answers from its ledger and nothing new happens downstream.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from events.envelope import Event, new_ref
from events.sim import SimActivationRequested, SimResellerAssigned
from infra.actors import SYSTEM
from infra.clock import Clock
from infra.kafka import Bus
from producers.sheet_rows import (
    ParsedImport,
    RowCollector,
    RowRejected,
    SimRow,
    collect_rows,
    sim_row,
    status_skip_reason,
)

PRODUCER = "simfleet/bulk_import"
MAX_BYTES = 50 * 1024 * 1024
EMIT_CHUNK = 500  # rows per Kafka round trip: progress stays live, memory stays flat
REQUIRED = ("iccid", "imei")
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
Progress = Callable[[int, int | None], None]


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; nothing was emitted."""


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
        """Every row not imported, in sheet order: refused (rejected, duplicate) or skipped."""
        p = self.parsed
        found = [
            (issue.line, kind, issue.reason)
            for kind, issues in (
                ("rejected", p.rejected),
                ("duplicate", p.duplicates),
                ("skipped", p.skipped),
            )
            for issue in issues
        ]
        for line, kind, reason in sorted(found, key=lambda f: f[0]):
            yield f"{p.unit} {line}: {kind}: {reason}"


def parse_rows(
    data: bytes, filename_or_content_type: str, *, max_bytes: int = MAX_BYTES
) -> ParsedImport:
    """Reads a sheet; the hint (file name, URL or content type) says CSV or JSON, else the
    first byte does (``{`` or ``[`` is JSON)."""
    if len(data) > max_bytes:
        raise ImportFileError(f"the file has {len(data):,} bytes; the limit is {max_bytes:,}")
    fmt, cells = sheet_cells(io.BytesIO(data), filename_or_content_type)
    return collect_rows(fmt, cells)


Cells = Iterator[tuple[int, dict[str, str] | str]]


def sheet_cells(source: IO[bytes], hint: str) -> tuple[Literal["csv", "json"], Cells]:
    """The sheet's rows as cells (or a reason), read from ``source`` as they are consumed (CSV)
    or at once (JSON); raises ``ImportFileError``, while reading too."""
    start = source.read(4096)
    source.seek(0)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in start[:4096]:
        raise ImportFileError("the file is UTF-16 or binary; export the sheet as CSV UTF-8")
    hint = hint.lower()
    if "json" in hint or ("csv" not in hint and start.lstrip()[:1] in (b"{", b"[")):
        return "json", _json_items(source.read())
    return "csv", _csv_rows(source)


def _csv_rows(source: IO[bytes]) -> Cells:
    # undecodable bytes become lone surrogates, so one bad cell rejects its row, not the file
    text = io.TextIOWrapper(source, encoding="utf-8-sig", errors="surrogateescape", newline="")
    first_line = text.readline()
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(itertools.chain([first_line], text), delimiter=delimiter)
    try:
        header = next(reader, [])
        columns = [c.strip().lower().replace(" ", "_").replace("-", "_") for c in header]
        if any(c not in columns for c in REQUIRED):
            raise ImportFileError(
                f"line 1 must be a header naming the columns iccid and imei "
                f"(found: {', '.join(columns)[:200] or 'nothing'})"
            )
        numbered = ((reader.line_num, row) for row in reader)  # line_num: the row's last line
        yield from _csv_cells(columns, numbered)
    except csv.Error as err:
        raise ImportFileError(f"line {reader.line_num}: unreadable CSV: {err}") from err
    finally:
        text.detach()  # the caller owns ``source``


def _csv_cells(
    columns: list[str], numbered: Iterable[tuple[int, list[str]]]
) -> Iterator[tuple[int, dict[str, str] | str]]:
    width = len(columns)
    for line, row in numbered:
        joined = "".join(row)
        if not joined.strip():
            continue  # blank lines separate nothing
        # searched in C: a character loop in Python was a third of the time spent on a sheet
        # (and the parse thread shares the GIL with the event loop)
        if bad := _UNDECODED.search(joined):
            yield (
                line,
                f"not UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x} near character "
                f"{bad.start() + 1}); save the sheet as CSV UTF-8",
            )
            continue
        extra = [cell for cell in row[width:] if cell.strip()] if len(row) > width else None
        if extra:
            yield (
                line,
                f"{len(row)} cells but the header names {len(columns)} columns "
                f"(extra: {', '.join(repr(c[:30]) for c in extra[:3])}); a separator inside a cell?",
            )
            continue
        yield line, {name: cell.strip() for name, cell in zip(columns, row, strict=False)}


def _json_items(data: bytes) -> Cells:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ImportFileError(f"the JSON is not UTF-8 (byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise ImportFileError(
            f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    items = document.get("sims") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ImportFileError('expected {"sims": [...]} or a list of SIMs')
    return ((n, _json_cells(item)) for n, item in enumerate(items, start=1))


def _json_cells(item: Any) -> dict[str, str] | str:
    if not isinstance(item, dict):
        return f"expected an object with iccid and imei, found {type(item).__name__}"
    cells: dict[str, str] = {}
    for key, value in item.items():
        if isinstance(value, bool) or not isinstance(value, str | int | type(None)):
            return f"{key} must be a string, found {type(value).__name__}"
        cells[str(key).lower()] = "" if value is None else str(value).strip()
    return cells


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


async def fetch_source(
    url_or_path: str, *, max_bytes: int = MAX_BYTES, timeout_s: float = 60.0
) -> bytes:
    """The sheet's bytes from an http(s) URL (e.g. ``SHEET_CSV_URL``) or a file path."""
    if url_or_path.startswith(("http://", "https://")):
        return await _download(url_or_path, max_bytes, timeout_s)
    return await asyncio.to_thread(_read_file, Path(url_or_path), max_bytes)


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as sheet:
            data = sheet.read(max_bytes + 1)  # never more than the limit in memory
    except OSError as err:
        raise ImportFileError(f"cannot read {path}: {err.strerror or err}") from err
    if len(data) > max_bytes:
        raise ImportFileError(f"{path} is over the limit of {max_bytes:,} bytes")
    return data


async def _download(url: str, max_bytes: int, timeout_s: float) -> bytes:
    received = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=True) as http,
            http.stream("GET", url) as response,
        ):
            if response.status_code != httpx.codes.OK:
                raise ImportFileError(f"the sheet URL answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                received += chunk
                if len(received) > max_bytes:
                    raise ImportFileError(f"the sheet is over the limit of {max_bytes:,} bytes")
    except httpx.HTTPError as err:
        raise ImportFileError(f"cannot fetch the sheet: {type(err).__name__}: {err}") from err
    return bytes(received)

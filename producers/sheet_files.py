"""A SIM sheet's bytes and cells: read from a file or an http(s) URL within the size limit, told
CSV or JSON, and split into numbered rows of cells (or the reason a row cannot be read). A file
that cannot be read as a whole (over the limit, UTF-16, no header, broken JSON, unreachable)
raises ``ImportFileError``; what the cells say is judged by ``producers.sheet_rows``."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import httpx

MAX_BYTES = 50 * 1024 * 1024
REQUIRED = ("iccid", "imei")
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; nothing was emitted."""


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

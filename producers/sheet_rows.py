"""SIM sheet rows (pure): validation of one row (ICCID, IMEI, reseller, gateway, port) and the
collection of a sheet's rows into what to import and what to report (``ParsedImport``).

Every check answers with the operator's reason, phrased so the sheet can be fixed: what is
wrong, what was found, and the usual cause where there is one (a spreadsheet that turned an
ICCID into ``8.9E+19``, an IMEI without its check digit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from events.types import luhn_ok

IMPORTED_STATUSES = frozenset({"", "pending"})  # the original imported only "pending"
MAX_LABEL = 64
_SCIENTIFIC = re.compile(r"^\d(?:[.,]\d+)?[eE]\+?\d+$")
_RESELLER = re.compile(r"^[a-z0-9_\-]{1,64}$")


@dataclass(frozen=True)
class SimRow:
    """A row ready to import; ``line`` is the sheet line (CSV) or item number (JSON)."""

    line: int
    iccid: str
    imei: str
    reseller_id: str | None = None
    gateway_id: str | None = None
    port: str | None = None


@dataclass(frozen=True)
class RowIssue:
    line: int  # CSV: the sheet line (header = 1); JSON: the item number (first = 1)
    reason: str
    iccid: str | None = None


@dataclass(frozen=True)
class ParsedImport:
    format: Literal["csv", "json"]
    rows: tuple[SimRow, ...]
    duplicates: tuple[RowIssue, ...] = ()
    rejected: tuple[RowIssue, ...] = ()
    skipped: tuple[RowIssue, ...] = ()

    @property
    def unit(self) -> str:
        return "line" if self.format == "csv" else "item"


class RowRejected(ValueError):
    """The row cannot be imported; the message is the reason shown to the operator."""


def iccid_problem(value: str) -> str | None:
    if not value:
        return "ICCID is missing"
    if _SCIENTIFIC.fullmatch(value):
        return f"ICCID {value} was turned into a number by the spreadsheet; format it as text"
    if not value.isdigit():
        return f"ICCID {value[:30]!r} must contain digits only"
    if not 19 <= len(value) <= 20:
        return f"ICCID {value} must be 19 or 20 digits (found {len(value)})"
    if not luhn_ok(value):
        return f"ICCID {value} fails the Luhn check (a mistyped digit?)"
    return None


def imei_problem(value: str) -> str | None:
    if not value:
        return "IMEI is missing"
    if _SCIENTIFIC.fullmatch(value):
        return f"IMEI {value} was turned into a number by the spreadsheet; format it as text"
    if not value.isdigit():
        return f"IMEI {value[:30]!r} must contain digits only"
    if len(value) == 14:
        return f"IMEI {value} has 14 digits: the check digit is missing"
    if len(value) != 15:
        return f"IMEI {value} must be 15 digits (found {len(value)})"
    if not luhn_ok(value):
        return f"IMEI {value} fails the Luhn check (a mistyped digit?)"
    return None


def _digits(value: str) -> str:
    return re.sub(r"[\s\-]", "", value)  # "8901 2608 ..." as printed on the card


def _optional(value: str, name: str) -> str | None:
    if not value:
        return None
    if len(value) > MAX_LABEL or not value.isprintable():
        raise RowRejected(f"{name} {value[:30]!r} is not a short printable label")
    return value


def sim_row(line: int, fields: dict[str, str]) -> SimRow:
    """Validates a row's cells (stripped strings, missing = ""); raises ``RowRejected``."""
    iccid, imei = _digits(fields.get("iccid", "")), _digits(fields.get("imei", ""))
    problems = [p for p in (iccid_problem(iccid), imei_problem(imei)) if p]
    if problems:
        raise RowRejected("; ".join(problems))
    reseller = fields.get("reseller_id", "")
    if reseller and not _RESELLER.fullmatch(reseller):
        raise RowRejected(
            f"reseller_id {reseller[:30]!r} must be lower-case letters, digits, '-' or '_'"
        )
    return SimRow(
        line,
        iccid,
        imei,
        reseller or None,
        _optional(fields.get("gateway_id", ""), "gateway_id"),
        _optional(fields.get("port", ""), "port"),
    )


def status_skip_reason(fields: dict[str, str]) -> str | None:
    """Why a row is left out by its ``status`` (None = import it)."""
    status = fields.get("status", "").lower()
    if status in IMPORTED_STATUSES:
        return None
    return f"status is {status[:30]!r}; only rows with an empty or 'pending' status are imported"


def collect_rows(
    fmt: Literal["csv", "json"], cells: Iterable[tuple[int, dict[str, str] | str]]
) -> ParsedImport:
    """Status filter, validation and duplicates over a sheet's cells (or a reason per row)."""
    rows: list[SimRow] = []
    first_seen: dict[str, int] = {}
    duplicates, rejected, skipped = [], [], []
    for line, found in cells:
        if isinstance(found, str):
            rejected.append(RowIssue(line, found))
            continue
        if reason := status_skip_reason(found):
            skipped.append(RowIssue(line, reason, found.get("iccid") or None))
            continue
        try:
            row = sim_row(line, found)
        except RowRejected as err:
            rejected.append(RowIssue(line, str(err), found.get("iccid") or None))
            continue
        if row.iccid in first_seen:
            unit = "line" if fmt == "csv" else "item"
            reason = f"ICCID {row.iccid} already on {unit} {first_seen[row.iccid]}"
            duplicates.append(RowIssue(line, reason, row.iccid))
            continue
        first_seen[row.iccid] = line
        rows.append(row)
    return ParsedImport(fmt, tuple(rows), tuple(duplicates), tuple(rejected), tuple(skipped))

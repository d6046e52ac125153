"""SIM sheet rows (pure): validation of one row (ICCID, IMEI, reseller, gateway, port) and the
collection of a sheet's rows into what to import and what to report (``ParsedImport``).

Every check answers with the operator's reason, phrased so the sheet can be fixed: what is
wrong, what was found, and the usual cause where there is one (a spreadsheet that turned an
ICCID into ``8.9E+19``, an IMEI without its check digit).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, overload

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


class RowIssue(NamedTuple):
    """A row not imported."""

    line: int  # CSV: the sheet line (header = 1); JSON: the item number (first = 1)
    reason: str
    iccid: str | None = None


class Issues(Sequence[RowIssue]):
    """Rows not imported, in sheet order, kept as plain tuples of plain values.

    A big sheet has hundreds of thousands of them. The garbage collector stops tracking a plain
    tuple of strings and numbers (not an instance of a class, not even a named tuple), so they
    add nothing to its full collections — which hold the GIL, and so would stall the event loop
    of the process importing the sheet for a second or more."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[int, str, str | None]] = ()) -> None:
        self._items = [(line, reason, iccid) for line, reason, iccid in items]

    def append(self, line: int, reason: str, iccid: str | None = None) -> None:
        self._items.append((line, reason, iccid))

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> RowIssue: ...
    @overload
    def __getitem__(self, index: slice) -> list[RowIssue]: ...
    def __getitem__(self, index: int | slice) -> RowIssue | list[RowIssue]:
        if isinstance(index, slice):
            return [RowIssue(*item) for item in self._items[index]]
        return RowIssue(*self._items[index])

    def __iter__(self) -> Iterator[RowIssue]:
        return (RowIssue(*item) for item in self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"Issues({len(self)} rows)"


@dataclass(frozen=True)
class ParsedImport:
    format: Literal["csv", "json"]
    rows: tuple[SimRow, ...]
    duplicates: Sequence[RowIssue] = ()
    rejected: Sequence[RowIssue] = ()
    skipped: Sequence[RowIssue] = ()

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


_SKIP_REASONS: dict[str, str] = {}  # one reason string per status, not one per skipped row


def status_skip_reason(fields: dict[str, str]) -> str | None:
    """Why a row is left out by its ``status`` (None = import it)."""
    status = fields.get("status", "").lower()
    if status in IMPORTED_STATUSES:
        return None
    reason = _SKIP_REASONS.get(status)
    if reason is None:
        reason = (
            f"status is {status[:30]!r}; only rows with an empty or 'pending' status are imported"
        )
        if len(_SKIP_REASONS) < 256:  # a sheet has a handful of statuses; a hostile one, many
            _SKIP_REASONS[status] = reason
    return reason


class AcceptedIccids(Sequence[str]):
    """The accepted ICCIDs in sheet order, as strings only when read."""

    def __init__(self, keys: dict[int, int]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self._keys))
            return [str(k)[1:] for k in itertools.islice(self._keys, start, stop, step)]
        if index < 0:
            index += len(self._keys)
        if not 0 <= index < len(self._keys):
            raise IndexError(index)
        return str(next(itertools.islice(self._keys, index, None)))[1:]

    def __iter__(self) -> Iterator[str]:
        return (str(k)[1:] for k in self._keys)


class RowCollector:
    """Status filter, validation and duplicates over a sheet's cells, one row at a time: what is
    kept per row is its ICCID and line (for duplicates), so a sheet can be read as a stream."""

    def __init__(self, fmt: Literal["csv", "json"]) -> None:
        self.format = fmt
        # accepted ICCID → its line, in sheet order; the ICCID as the number "1<digits>" (a
        # third of a string's size, leading zeros kept): a 20 MB sheet has ~400k of them
        self._first_seen: dict[int, int] = {}
        self.duplicates = Issues()
        self.rejected = Issues()
        self.skipped = Issues()

    def add(self, line: int, found: dict[str, str] | str) -> SimRow | None:
        """The row to import, or None (the reason is recorded)."""
        if isinstance(found, str):
            self.rejected.append(line, found)
            return None
        if reason := status_skip_reason(found):
            self.skipped.append(line, reason, found.get("iccid") or None)
            return None
        try:
            row = sim_row(line, found)
        except RowRejected as err:
            self.rejected.append(line, str(err), found.get("iccid") or None)
            return None
        key = int("1" + row.iccid)
        if key in self._first_seen:
            unit = "line" if self.format == "csv" else "item"
            reason = f"ICCID {row.iccid} already on {unit} {self._first_seen[key]}"
            self.duplicates.append(line, reason, row.iccid)
            return None
        self._first_seen[key] = line
        return row

    def accepted_on(self, row: SimRow) -> bool:
        """Whether ``row`` is the one this collector accepted for its ICCID."""
        return self._first_seen.get(int("1" + row.iccid)) == row.line

    @property
    def accepted(self) -> AcceptedIccids:
        return AcceptedIccids(self._first_seen)

    def parsed(self, rows: Iterable[SimRow] = ()) -> ParsedImport:
        return ParsedImport(self.format, tuple(rows), self.duplicates, self.rejected, self.skipped)


def collect_rows(
    fmt: Literal["csv", "json"], cells: Iterable[tuple[int, dict[str, str] | str]]
) -> ParsedImport:
    """Status filter, validation and duplicates over a sheet's cells (or a reason per row)."""
    collector = RowCollector(fmt)
    rows = [row for line, found in cells if (row := collector.add(line, found)) is not None]
    return collector.parsed(rows)

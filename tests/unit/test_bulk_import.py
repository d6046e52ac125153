"""Sheet parsing: line-numbered reports, Luhn, duplicates, encodings, status filter, JSON forms."""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from events.envelope import Event
from events.sim import SimActivationRequested, SimResellerAssigned
from producers.bulk_import import (
    ImportFileError,
    ImportReport,
    fetch_source,
    import_sheet,
    parse_rows,
    requests_for,
)
from sandbox.helix_world import make_iccid, make_imei
from simfleet.cli_import import import_app
from tests.support.clock import ControlledClock

ICCID, IMEI = make_iccid(1), make_imei(1)
HEADER = "iccid,imei,reseller_id,status\n"

SHEET_TIME = datetime(2026, 2, 4, 12, tzinfo=UTC)


def sheet(*lines: str, header: str = HEADER) -> bytes:
    return (header + "".join(line + "\n" for line in lines)).encode()


def bad_luhn(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def test_good_rows_are_read_with_their_fields() -> None:
    parsed = parse_rows(
        sheet(f"{ICCID},{IMEI},acme,pending", f"{make_iccid(2)},{make_imei(2)},,"), "sims.csv"
    )

    assert parsed.format == "csv"
    assert [(r.line, r.iccid, r.imei, r.reseller_id) for r in parsed.rows] == [
        (2, ICCID, IMEI, "acme"),
        (3, make_iccid(2), make_imei(2), None),
    ]
    assert (parsed.rejected, parsed.duplicates, parsed.skipped) == ((), (), ())


def test_bad_rows_are_reported_with_their_line_and_reason_while_good_rows_go_on() -> None:
    parsed = parse_rows(
        sheet(
            f"{ICCID},{IMEI},acme,pending",
            f"{bad_luhn(make_iccid(2))},{make_imei(2)},acme,pending",
            f"{make_iccid(3)},{bad_luhn(make_imei(3))},acme,",
            f"{make_iccid(4)[:15]},{make_imei(4)},,",
            f"8.90126E+19,{make_imei(5)},,",
            f"{make_iccid(6)},{make_imei(6)[:14]},,",
            f"{make_iccid(7)},{make_imei(7)},ACME Corp,",
            f",{make_imei(8)},,",
            f"{make_iccid(9)},{make_imei(9)},,",
        ),
        "sims.csv",
    )

    assert [r.line for r in parsed.rows] == [2, 10]
    reasons = {issue.line: issue.reason for issue in parsed.rejected}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9}
    assert "ICCID" in reasons[3]
    assert "Luhn" in reasons[3]
    assert "IMEI" in reasons[4]
    assert "Luhn" in reasons[4]
    assert "19 or 20 digits (found 15)" in reasons[5]
    assert "spreadsheet" in reasons[6]
    assert "check digit is missing" in reasons[7]
    assert "reseller_id" in reasons[8]
    assert "ICCID is missing" in reasons[9]


def test_an_iccid_seen_twice_is_imported_once_and_the_repeat_reported() -> None:
    parsed = parse_rows(
        sheet(f"{ICCID},{IMEI},,", f"{make_iccid(2)},{make_imei(2)},,", f"{ICCID},{IMEI},,"),
        "sims.csv",
    )

    assert [r.iccid for r in parsed.rows] == [ICCID, make_iccid(2)]
    [duplicate] = parsed.duplicates
    assert (duplicate.line, duplicate.iccid) == (4, ICCID)
    assert "line 2" in duplicate.reason


def test_only_rows_with_an_empty_or_pending_status_are_imported() -> None:
    parsed = parse_rows(
        sheet(
            f"{ICCID},{IMEI},,Pending",
            f"{make_iccid(2)},{make_imei(2)},,",
            f"{make_iccid(3)},{make_imei(3)},,active",
            f"{make_iccid(4)},{make_imei(4)},,done ",
        ),
        "sims.csv",
    )

    assert [r.line for r in parsed.rows] == [2, 3]
    assert [(s.line, s.iccid) for s in parsed.skipped] == [(4, make_iccid(3)), (5, make_iccid(4))]
    assert "'active'" in parsed.skipped[0].reason
    assert parsed.rejected == ()


def test_a_non_utf8_line_is_rejected_alone_and_a_bom_is_fine() -> None:
    data = (
        b"\xef\xbb\xbf"
        + sheet(f"{ICCID},{IMEI},,")
        + f"{make_iccid(2)},{make_imei(2)},caf".encode()
        + b"\xe9,\n"
        + f"{make_iccid(3)},{make_imei(3)},,\n".encode()
    )

    parsed = parse_rows(data, "text/csv")

    assert [r.line for r in parsed.rows] == [2, 4]
    [bad] = parsed.rejected
    assert bad.line == 3
    assert "not UTF-8 (byte 0xe9" in bad.reason


def test_semicolons_tabs_extra_columns_gateway_port_and_crlf_are_read() -> None:
    data = (
        f"ICCID;IMEI;Reseller ID;Status;Gateway-ID;Port;Notes\r\n"
        f"{ICCID};{IMEI};acme;;gw-1;1.01;first batch\r\n"
        f"\r\n"
        f"{make_iccid(2)};{make_imei(2)}\r\n"
    ).encode()

    parsed = parse_rows(data, "sims.csv")

    assert [(r.line, r.gateway_id, r.port, r.reseller_id) for r in parsed.rows] == [
        (2, "gw-1", "1.01", "acme"),
        (4, None, None, None),
    ]
    tabbed = parse_rows(f"iccid\timei\n{ICCID}\t{IMEI}\n".encode(), "sims.tsv")
    assert [r.iccid for r in tabbed.rows] == [ICCID]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (f"{ICCID},{IMEI}\n".encode(), "header"),
        (b"", "header"),
        ("iccid,imei\n".encode("utf-16"), "UTF-16"),
        (b"iccid,imei\n" + b'"' + b"9" * 200_000 + b'",1\n', "line 2"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_whole_is_a_file_error(data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        parse_rows(data, "sims.csv")


def test_huge_files_are_refused_before_parsing() -> None:
    with pytest.raises(ImportFileError, match="limit is 1,024"):
        parse_rows(sheet(*[f"{ICCID},{IMEI},," for _ in range(100)]), "sims.csv", max_bytes=1024)


def test_json_accepts_the_original_object_and_a_bare_list() -> None:
    sims = [
        {"iccid": ICCID, "imei": IMEI, "reseller_id": "acme"},
        {"iccid": int(make_iccid(2)), "imei": make_imei(2), "reseller_id": None},
        {"iccid": bad_luhn(make_iccid(3)), "imei": make_imei(3)},
        "not an object",
        {"iccid": ICCID, "imei": IMEI},
        {"iccid": [1], "imei": IMEI},
    ]
    wrapped = parse_rows(json.dumps({"sims": sims}).encode(), "application/json")
    bare = parse_rows(json.dumps(sims).encode(), "upload")  # sniffed from the first byte

    for parsed in (wrapped, bare):
        assert parsed.format == "json"
        assert [(r.line, r.iccid, r.reseller_id) for r in parsed.rows] == [
            (1, ICCID, "acme"),
            (2, make_iccid(2), None),
        ]
        assert [i.line for i in parsed.rejected] == [3, 4, 6]
        assert [(d.line, d.reason) for d in parsed.duplicates] == [
            (5, f"ICCID {ICCID} already on item 1")
        ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"sims": [', "not valid JSON"),
        (b'{"rows": []}', "expected"),
        (b'[{"iccid": "caf\xe9"}]', "not UTF-8"),
    ],
)
def test_broken_json_is_a_file_error(data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        parse_rows(data, "sims.json")


def test_requests_have_ids_that_do_not_change_between_imports() -> None:
    [row] = parse_rows(sheet(f"{ICCID},{IMEI},acme,"), "sims.csv").rows

    first = requests_for(row, ControlledClock(SHEET_TIME), "ops")
    again = requests_for(row, ControlledClock(SHEET_TIME), "someone else")

    assert [type(e) for e in first] == [SimActivationRequested, SimResellerAssigned]
    assert [e.id for e in first] == [e.id for e in again]
    request, assigned = first
    assert isinstance(request, SimActivationRequested)
    assert request.data.ref == f"import:{ICCID}"
    assert assigned.correlationid == request.id


async def test_fetch_source_reads_files_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "sims.csv"
    path.write_bytes(sheet(f"{ICCID},{IMEI},,"))

    assert await fetch_source(str(path)) == path.read_bytes()
    with pytest.raises(ImportFileError, match="over the limit"):
        await fetch_source(str(path), max_bytes=10)
    with pytest.raises(ImportFileError, match="cannot read"):
        await fetch_source(str(tmp_path / "missing.csv"))


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Another command, so the mounted one keeps its name."""

    app.add_typer(import_app)
    return app


def test_the_cli_reports_rows_and_exits_0_on_a_dry_run_and_2_on_an_unusable_file(
    tmp_path: Path,
) -> None:
    good = tmp_path / "sims.csv"
    good.write_bytes(sheet(f"{ICCID},{IMEI},,", f"{bad_luhn(make_iccid(2))},{make_imei(2)},,"))
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("iccid,imei\n".encode("utf-16"))

    checked = CliRunner().invoke(cli(), ["import", str(good), "--dry-run"])
    unusable = CliRunner().invoke(cli(), ["import", str(utf16)])
    missing = CliRunner().invoke(cli(), ["import", str(tmp_path / "nope.csv")])

    assert checked.exit_code == 0, checked.output
    assert "line 3: rejected: ICCID" in checked.output
    assert "1 row(s) ready" in checked.output
    assert (unusable.exit_code, missing.exit_code) == (2, 2)
    assert "UTF-16" in unusable.output


def test_a_row_with_more_cells_than_the_header_is_refused_not_cut_short() -> None:
    parsed = parse_rows(
        sheet(f"{ICCID},{IMEI},acme,pending,surprise", f"{make_iccid(2)},{make_imei(2)},acme,,"),
        "sims.csv",
    )

    assert [r.line for r in parsed.rows] == [3]  # an empty trailing cell is harmless
    assert [issue.line for issue in parsed.rejected] == [2]
    assert "5 cells but the header names 4 columns" in parsed.rejected[0].reason
    assert "'surprise'" in parsed.rejected[0].reason


def test_the_report_lists_every_refused_or_skipped_line_in_line_order() -> None:
    parsed = parse_rows(
        sheet(
            f"{make_iccid(1)},{make_imei(1)},,active",
            f"{make_iccid(2)},{make_imei(2)},,",
            f"{bad_luhn(make_iccid(3))},{make_imei(3)},,",
            f"{make_iccid(2)},{make_imei(2)},,",
            f"{make_iccid(5)},{make_imei(5)},,cancelled",
        ),
        "sims.csv",
    )

    issues = list(ImportReport(parsed, accepted=(make_iccid(2),)).issues())

    assert [issue.split(":")[0] for issue in issues] == ["line 2", "line 4", "line 5", "line 6"]
    assert [issue.split(": ")[1] for issue in issues] == [
        "skipped",
        "rejected",
        "duplicate",
        "skipped",
    ]


class CountingBus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit_many(self, events: Iterable[Event]) -> None:
        self.events += list(events)


async def test_a_streamed_sheet_gives_the_report_and_events_of_a_sheet_read_whole() -> None:
    data = sheet(
        f"{make_iccid(1)},{make_imei(1)},acme,",
        f"{make_iccid(2)},{make_imei(2)},,active",
        f"{make_iccid(1)},{make_imei(1)},,",
        *(f"{make_iccid(n)},{make_imei(n)},," for n in range(3, 1203)),
    )
    bus = CountingBus()

    report = await import_sheet(io.BytesIO(data), "sims.csv", bus, ControlledClock(SHEET_TIME))  # type: ignore[arg-type]

    whole = parse_rows(data, "sims.csv")
    assert list(report.accepted) == [r.iccid for r in whole.rows]
    assert report.accepted[:2] == [make_iccid(1), make_iccid(3)]
    assert report.accepted[-1] == make_iccid(1202)
    assert report.parsed.duplicates == whole.duplicates
    assert report.parsed.skipped == whole.skipped
    assert report.events == len(bus.events) == 1201 + 1  # one reseller assignment
    assert [e.subject for e in bus.events if e.type == "sim.activation_requested"] == list(
        report.accepted
    )


async def test_a_streamed_sheet_unreadable_midway_publishes_nothing() -> None:
    good = [f"{make_iccid(n)},{make_imei(n)},," for n in range(1, 1500)]
    data = sheet(*good, "x," + "a" * 200_000)  # over the csv module's field limit
    bus = CountingBus()

    with pytest.raises(ImportFileError):
        await import_sheet(io.BytesIO(data), "sims.csv", bus, ControlledClock(SHEET_TIME))  # type: ignore[arg-type]

    assert bus.events == []


def test_a_big_report_adds_nothing_for_the_garbage_collector_to_walk() -> None:
    """A full collection walks every object it tracks, holding the GIL: a report of 400,000
    skipped rows made of tracked objects stalled the importing process's event loop for over a
    second. The rows not imported are kept as plain tuples, which it stops tracking."""
    rows = 20_000
    data = sheet(
        *(f"{make_iccid(n)},{make_imei(n)},,active" for n in range(1, rows + 1)),
        f"{make_iccid(1)}9,{make_imei(1)},,",  # one rejected
        *(f"{make_iccid(n)},{make_imei(n)},,pending" for n in range(2, 4)),
        f"{make_iccid(2)},{make_imei(2)},,",  # one duplicate
    )
    gc.collect()
    tracked_before = len(gc.get_objects())

    parsed = parse_rows(data, "sims.csv")
    gc.collect()
    tracked = len(gc.get_objects()) - tracked_before

    assert (len(parsed.skipped), len(parsed.rejected), len(parsed.duplicates)) == (rows, 1, 1)
    assert tracked < rows / 20, f"{tracked} more tracked objects"
    assert parsed.skipped[-1].line == rows + 1  # still read as rows with their fields
    assert [i.reason for i in parsed.duplicates] == [
        f"ICCID {make_iccid(2)} already on line {rows + 3}"
    ]
    assert len({id(issue.reason) for issue in parsed.skipped[:100]}) == 1  # one reason, shared

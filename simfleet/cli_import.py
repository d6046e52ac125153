"""``simfleet import [FILE|URL]``: a SIM sheet → activation requests, with a summary.

Mounted by ``simfleet.cli`` with ``app.add_typer(import_app)`` (no name: the command is top level).

Exit codes: 0 — the sheet was read and its good rows published, even when some rows were
rejected, skipped or duplicated (each is listed with its line); 2 — the file itself could not be
used (missing, unreadable, over the size limit, UTF-16, no header, broken JSON, the URL failed),
nothing was published; 1 — Kafka did not acknowledge the requests (re-run: the ids are the same,
so rows already published change nothing).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer

from infra.actors import cli_actor
from infra.bus import BrokerUnavailable
from infra.logging import configure
from infra.progress import progress_bar
from infra.settings import Settings
from producers.bulk_import import (
    ImportFileError,
    ImportReport,
    Progress,
    fetch_source,
    import_sims,
    parse_rows,
)
from producers.sheet_rows import ParsedImport
from simfleet import app as composition
from simfleet.endpoints import Endpoints, resolve_endpoints

import_app = typer.Typer()
SHOWN_ISSUES = 50


@import_app.command("import")
def import_sheet(
    source: Annotated[
        str | None, typer.Argument(help="CSV/JSON file or http(s) URL; default SHEET_CSV_URL")
    ] = None,
    max_mb: Annotated[float, typer.Option(help="refuse larger files (MB)")] = 50.0,
    dry_run: Annotated[bool, typer.Option(help="check the sheet, publish nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    reuse: Annotated[
        bool, typer.Option("--reuse/--no-reuse", help="attach to a running simfleet's broker")
    ] = True,
) -> None:
    """Request activation of every pending SIM in a sheet (exit 2: the file is unusable)."""
    settings = Settings()
    configure(settings.log_format, settings.log_level, settings.secret_values().values())
    where = source or settings.sheet_csv_url
    if not where:
        typer.echo("no FILE or URL given and SHEET_CSV_URL is unset", err=True)
        raise typer.Exit(2)
    try:
        max_bytes = int(max_mb * 1024 * 1024)
        parsed = parse_rows(
            asyncio.run(fetch_source(where, max_bytes=max_bytes)), where, max_bytes=max_bytes
        )
    except ImportFileError as err:
        typer.echo(f"cannot import {source or 'SHEET_CSV_URL'}: {err}", err=True)
        raise typer.Exit(2) from err
    report = ImportReport(parsed) if dry_run else publish(settings, parsed, reuse=reuse)
    show(report, as_json=as_json, dry_run=dry_run)


def publish(settings: Settings, parsed: ParsedImport, *, reuse: bool) -> ImportReport:
    try:
        with (
            resolve_endpoints(settings, reuse=reuse) as endpoints,
            progress_bar("importing", unit="sims") as update,
        ):
            return asyncio.run(_publish(settings, endpoints, parsed, update))
    except BrokerUnavailable as err:
        typer.echo(f"Kafka did not acknowledge the requests ({err}); re-run the import", err=True)
        raise typer.Exit(1) from err


async def _publish(
    settings: Settings, endpoints: Endpoints, parsed: ParsedImport, progress: Progress
) -> ImportReport:
    await composition.prepare(settings, endpoints)
    async with composition.runtime(settings, endpoints) as rt:
        return await import_sims(parsed, rt.bus, rt.clock, progress, requested_by=cli_actor())


def show(report: ImportReport, *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        body = {"accepted": list(report.accepted), "dry_run": dry_run, **asdict(report.parsed)}
        typer.echo(json.dumps(body, indent=2))
        return
    issues = list(report.issues())
    for line in issues[:SHOWN_ISSUES]:
        typer.echo(line)
    if len(issues) > SHOWN_ISSUES:
        typer.echo(f"… and {len(issues) - SHOWN_ISSUES} more (--json lists them all)")
    ready = len(report.parsed.rows)
    prefix = f"dry run: {ready} row(s) ready, nothing published; " if dry_run else ""
    typer.echo(prefix + report.summary())

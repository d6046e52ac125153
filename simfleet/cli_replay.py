"""``simfleet replay …``: rebuild a projection from its events (or check a rebuild against the
live tables), and re-publish archived events. Attaches to a running simfleet by default."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer

from infra import gc_tuning
from infra.progress import progress_bar
from infra.settings import Settings
from infra.user_errors import UserError
from projections import replay
from projections.registry import all_projections
from simfleet import app as composition
from simfleet.cli_settings import ReuseRunning, as_utc, load_settings, require_running
from simfleet.endpoints import Endpoints, resolve_endpoints

replay_app = typer.Typer(help="Rebuild projections from events; re-publish archived events.")

FromArchive = Annotated[
    bool, typer.Option("--from-archive", help="read events from event_log instead of Kafka")
]


def require_projection(name: str) -> None:
    known = all_projections()
    if name not in known:
        raise UserError(f"unknown projection {name!r}; known: {', '.join(known)}")


@replay_app.command("projection")
def replay_projection(
    name: str, from_archive: FromArchive = False, reuse: ReuseRunning = True
) -> None:
    """Rebuild one projection's tables into fresh ones, then swap them in atomically."""
    rebuilt(name, from_archive=from_archive, reuse=reuse, swap=True, doing="rebuilding")
    typer.echo(f"{name} rebuilt and swapped in")


@replay_app.command("verify")
def replay_verify(name: str, from_archive: FromArchive = False, reuse: ReuseRunning = True) -> None:
    """Rebuild into scratch tables and compare row by row; exit 0 only when identical."""
    differences = rebuilt(
        name, from_archive=from_archive, reuse=reuse, swap=False, doing="verifying"
    )
    for line in differences:
        typer.echo(line)
    if differences:
        typer.echo(f"{name}: differences found (first {len(differences)} shown)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name}: identical")


def rebuilt(name: str, *, from_archive: bool, reuse: bool, swap: bool, doing: str) -> list[str]:
    """One projection rebuilt in the running simfleet, with a progress bar; the differences
    from the live tables where not swapped in."""
    require_projection(name)
    settings = load_settings()
    require_running(settings, reuse)
    with (
        resolve_endpoints(settings, reuse=reuse) as endpoints,
        progress_bar(f"{doing} {name}") as update,
    ):
        return asyncio.run(
            rebuild(
                settings, endpoints, name, from_archive=from_archive, swap=swap, progress=update
            )
        )


@replay_app.command("publish")
def replay_publish(
    types: Annotated[str | None, typer.Option(help="comma-separated event types")] = None,
    since: Annotated[datetime | None, typer.Option(help="event time from (ISO 8601, UTC)")] = None,
    until: Annotated[
        datetime | None, typer.Option(help="event time before (ISO 8601, UTC)")
    ] = None,
    reuse: ReuseRunning = True,
) -> None:
    """Re-publish archived events to Kafka with their original ids (consumers de-duplicate)."""
    settings = load_settings()
    require_running(settings, reuse)
    with (
        resolve_endpoints(settings, reuse=reuse) as endpoints,
        progress_bar("re-publishing") as update,
    ):
        sent = asyncio.run(
            republish(
                settings,
                endpoints,
                types=types.split(",") if types else None,
                since=as_utc(since),
                until=as_utc(until),
                progress=update,
            )
        )
    typer.echo(f"re-published {sent} event(s)")


async def rebuild(
    settings: Settings,
    endpoints: Endpoints,
    name: str,
    *,
    from_archive: bool,
    swap: bool,
    progress: replay.Progress,
) -> list[str]:
    projections = all_projections()
    if name not in projections:
        raise replay.ReplayError(f"unknown projection {name!r}; known: {', '.join(projections)}")
    async with composition.runtime(settings, endpoints) as rt:
        # a rebuild decodes and drops millions of events: the collector as a service sets it
        gc_tuning.tune_for_service()
        return await replay.rebuild(
            projections[name],
            dsn=endpoints.database_url,
            live_pool=rt.pool,
            bus=rt.bus,
            bootstrap=endpoints.kafka_bootstrap,
            kafka=settings.kafka,
            from_archive=from_archive,
            swap=swap,
            progress=progress,
        )


async def republish(
    settings: Settings,
    endpoints: Endpoints,
    *,
    types: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    progress: replay.Progress,
) -> int:
    async with composition.runtime(settings, endpoints) as rt:
        return await replay.republish(
            rt.pool, rt.bus, types=types, since=since, until=until, progress=progress
        )

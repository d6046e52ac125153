"""``simfleet run`` and the commands that run one role alone (``workers``, ``dashboard``,
``scheduler``, ``bridge``, ``projector``); mounted by ``simfleet.cli`` at the top level."""

from __future__ import annotations

from typing import Annotated

import typer

from infra import event_loop
from simfleet import app as composition
from simfleet import components
from simfleet.cli_settings import Reuse, load_settings
from simfleet.endpoints import resolve_endpoints

run_app = typer.Typer()


@run_app.command()
def run(reuse: Reuse = False) -> None:
    """Run every component in one process (embedded broker/Postgres where none is configured)."""
    run_components(None, reuse)


def run_components(role: str | None, reuse: bool) -> None:
    settings = load_settings()
    chosen = (
        components.registered_components() if role is None else components.components_by_role(role)
    )
    with resolve_endpoints(settings, reuse=reuse) as endpoints:
        event_loop.run(composition.serve(settings, endpoints, chosen))


@run_app.command()
def workers(
    names: Annotated[
        list[str] | None, typer.Argument(help="worker components to run (default: all)")
    ] = None,
    reuse: Reuse = False,
) -> None:
    """Run side-effect consumers; several processes share partitions by consumer group."""
    chosen = components.components_by_role("workers")
    known = {c.name for c in chosen}
    unknown = set(names or ()) - known
    if unknown:
        typer.echo(f"unknown workers {sorted(unknown)}; known: {sorted(known)}", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    selected = [c for c in chosen if not names or c.name in names]
    with resolve_endpoints(settings, reuse=reuse) as endpoints:
        event_loop.run(composition.serve(settings, endpoints, selected))


@run_app.command()
def dashboard(reuse: Reuse = False) -> None:
    """Run the operator dashboard alone."""
    run_components("dashboard", reuse)


@run_app.command()
def scheduler(reuse: Reuse = False) -> None:
    """Run the clock-driven requests and sweeps alone (rotation, timeouts, finalize, sync)."""
    run_components("scheduler", reuse)


@run_app.command()
def bridge(reuse: Reuse = False) -> None:
    """Run the gateway bridge (HTTP pushes → Kafka) alone."""
    run_components("bridge", reuse)


@run_app.command()
def projector(reuse: Reuse = False) -> None:
    """Run the projections (Postgres read tables and the event archive) alone."""
    run_components("projector", reuse)

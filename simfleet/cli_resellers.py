"""``simfleet resellers …``: the operator's reseller commands (mounted by ``simfleet.cli``).

Each command: settings → the running system's Kafka and Postgres → one call of
``producers.reseller_commands`` → print. Signing secrets are printed once, to this terminal.
The events name the operating-system user as the actor (``cli:<user>``, ``infra.actors``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from infra.actors import cli_actor
from infra.dev_secrets import with_development_defaults
from infra.logging import configure
from infra.settings import Settings
from infra.webhook_signing import SecretBox
from policies.rotation import RotationPolicy
from producers.reseller_commands import (
    CommandRejected,
    IssuedSecret,
    ResellerCommands,
    parse_iccid_lines,
)
from producers.resync import reseller_id_for
from projections import reseller_queries
from simfleet import app as composition
from simfleet.cli_settings import ReuseRunning, as_utc
from simfleet.endpoints import Endpoints, resolve_endpoints

app = typer.Typer(help="Resellers, their webhook endpoints and SIMs.")
T = TypeVar("T")
Reason = Annotated[str, typer.Option(help="why (recorded in the operator audit)")]


@contextlib.asynccontextmanager
async def _commands(settings: Settings, endpoints: Endpoints) -> AsyncIterator[ResellerCommands]:
    await composition.prepare(settings, endpoints)
    async with composition.runtime(settings, endpoints) as rt:
        box = SecretBox.of_deployment(settings)
        yield ResellerCommands(
            bus=rt.bus, pool=rt.pool, box=box, settings=settings.webhooks, clock=rt.clock
        )


def _run(action: Callable[[ResellerCommands], Awaitable[T]], reuse: bool) -> T:
    settings = with_development_defaults(Settings())
    configure(settings.log_format, "WARNING", settings.secret_values().values())

    async def call(endpoints: Endpoints) -> T:
        async with _commands(settings, endpoints) as commands:
            return await action(commands)

    with resolve_endpoints(settings, reuse=reuse) as endpoints:
        try:
            return asyncio.run(call(endpoints))
        except CommandRejected as err:
            typer.echo(f"refused: {err}", err=True)
            raise typer.Exit(2) from None


def _show_secret(issued: IssuedSecret) -> None:
    typer.echo(f"endpoint {issued.endpoint_id} of {issued.reseller_id}")
    typer.echo(f"signing secret (shown once, store it now): {issued.secret}")
    if issued.previous_valid_until:
        typer.echo(f"the previous secret signs too until {issued.previous_valid_until.isoformat()}")


@app.command()
def create(
    reseller_id: str, name: Annotated[str, typer.Option()], reuse: ReuseRunning = True
) -> None:
    """Register a reseller (id: lower-case letters, digits, - and _)."""
    event_id = _run(lambda c: c.create_reseller(reseller_id, name, cli_actor()), reuse)
    typer.echo(f"reseller {reseller_id} created ({event_id})")


@app.command("list")
def list_(reuse: ReuseRunning = True) -> None:
    """Resellers with their endpoints (never their secrets)."""

    async def listing(c: ResellerCommands) -> list[str]:
        lines = []
        for r in await reseller_queries.list_resellers(c.pool):
            lines.append(f"{r.id}  {r.name}  endpoints={r.endpoints}  sims={r.sims}")
            lines += [
                f"    {e.endpoint_id}  {e.url}  {'enabled' if e.enabled else 'DISABLED'}  "
                f"health={e.health}  types={','.join(e.event_types) or 'all'}"
                + (f"  ({e.disabled_reason})" if e.disabled_reason else "")
                for e in await reseller_queries.list_endpoints(c.pool, r.id)
            ]
        return lines

    for line in _run(listing, reuse) or ["no resellers"]:
        typer.echo(line)


@app.command("add-endpoint")
def add_endpoint(
    reseller_id: str,
    url: str,
    event_type: Annotated[list[str] | None, typer.Option(help="repeat; default: all")] = None,
    endpoint_id: Annotated[str | None, typer.Option(help="default: generated")] = None,
    reuse: ReuseRunning = True,
) -> None:
    """Add a webhook endpoint; prints its signing secret once."""
    types = event_type or []
    _show_secret(
        _run(
            lambda c: c.add_endpoint(
                reseller_id, url, cli_actor(), event_types=types, endpoint_id=endpoint_id
            ),
            reuse,
        )
    )


@app.command("remove-endpoint")
def remove_endpoint(
    reseller_id: str, endpoint_id: str, reason: Reason, reuse: ReuseRunning = True
) -> None:
    """Stop sending to an endpoint and forget it (--reason is required)."""
    _run(lambda c: c.remove_endpoint(reseller_id, endpoint_id, cli_actor(), reason), reuse)
    typer.echo(f"endpoint {endpoint_id} removed")


@app.command("rotate-secret")
def rotate_secret(
    reseller_id: str, endpoint_id: str, reason: Reason = "", reuse: ReuseRunning = True
) -> None:
    """New signing secret; the previous one keeps signing for WEBHOOK_ROTATION_OVERLAP_S."""
    _show_secret(
        _run(lambda c: c.rotate_secret(reseller_id, endpoint_id, cli_actor(), reason), reuse)
    )


@app.command("enable-endpoint")
def enable_endpoint(
    reseller_id: str,
    endpoint_id: str,
    redeliver: Annotated[
        bool | None,
        typer.Option(
            "--redeliver/--no-redeliver",
            help="send again what it missed (failed, or skipped while disabled); default: ask",
        ),
    ] = None,
    reuse: ReuseRunning = True,
) -> None:
    """Re-enable a disabled endpoint (410 Gone, or failing too long); offers to redeliver."""
    if redeliver is None:
        missed, since = _run(lambda c: c.missed(reseller_id, endpoint_id), reuse)
        redeliver = missed > 0 and typer.confirm(
            f"{missed} deliveries failed or were skipped since {since.isoformat()}; "
            "redeliver them?",
            default=True,
        )
    done = _run(
        lambda c: c.enable_endpoint(
            reseller_id, endpoint_id, cli_actor(), redeliver=bool(redeliver)
        ),
        reuse,
    )
    typer.echo(f"endpoint {endpoint_id} enabled ({done.event_id})")
    if done.resend_event_id:
        typer.echo(
            f"redelivery of {done.missed} missed deliveries requested ({done.resend_event_id})"
        )


@app.command()
def assign(
    reseller_id: str,
    iccids: Annotated[list[str] | None, typer.Argument(help="ICCIDs")] = None,
    file: Annotated[
        Path | None, typer.Option(help="one ICCID per line (or CSV, first column)")
    ] = None,
    reuse: ReuseRunning = True,
) -> None:
    """Assign SIMs to a reseller: their SMS and number events go to its endpoints."""
    from_file, errors = parse_iccid_lines(file.read_text()) if file else ([], [])
    done = _run(
        lambda c: c.assign_sims(reseller_id, [*(iccids or []), *from_file], cli_actor()), reuse
    )
    for error in [*errors, *done.errors]:
        typer.echo(f"skipped {error}", err=True)
    typer.echo(f"assigned {len(done.assigned)} SIM(s) to {reseller_id}")


@app.command()
def resend(
    reseller_id: str,
    *,
    message_id: Annotated[list[str] | None, typer.Option(help="repeat for several")] = None,
    endpoint_id: Annotated[str | None, typer.Option()] = None,
    since: Annotated[datetime | None, typer.Option(help="deliveries from (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(help="deliveries before (UTC)")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="only failed deliveries")] = False,
    reason: Reason = "",
    reuse: ReuseRunning = True,
) -> None:
    """Deliver again (a new attempt sequence), even what was delivered."""
    event_id = _run(
        lambda c: c.resend(
            reseller_id,
            cli_actor(),
            message_ids=message_id or [],
            endpoint_id=endpoint_id,
            since=as_utc(since),
            until=as_utc(until),
            only_failed=failed,
            reason=reason,
        ),
        reuse,
    )
    typer.echo(f"resend requested ({event_id})")


@app.command()
def resync(name: str, reuse: ReuseRunning = True) -> None:
    """Re-send number.online for every online number of a reseller (by id or name)."""

    rotation = Settings().rotation

    async def action(commands: ResellerCommands) -> int:
        reseller_id = await reseller_id_for(commands.pool, name)
        if reseller_id is None:
            raise CommandRejected(f"no reseller with id or name {name!r}")
        return await commands.resync(reseller_id, RotationPolicy.from_settings(rotation))

    typer.echo(f"re-sent number.online for {_run(action, reuse)} number(s)")

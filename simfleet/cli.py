"""The ``simfleet`` command line: each command builds settings, calls ``simfleet.app``, runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from infra import event_loop
from infra.dev_secrets import with_development_defaults
from infra.embedded.service import EmbeddedInfraError, reusable
from infra.logging import configure
from infra.progress import progress_bar
from infra.settings import Settings
from infra.user_errors import EXIT_USAGE, UserError, load_problem
from projections.registry import all_projections
from simfleet import app as composition
from simfleet import components
from simfleet.cli_import import import_app
from simfleet.cli_reseller_tokens import app as reseller_tokens_app
from simfleet.cli_resellers import app as resellers_app

app = typer.Typer(help="simfleet: SIM fleet provisioning, verification and reseller webhooks.")
topics_app = typer.Typer(help="Kafka topics.")
schemas_app = typer.Typer(help="JSON Schemas of the events.")
config_app = typer.Typer(help="Configuration.")
replay_app = typer.Typer(help="Rebuild projections from events; re-publish archived events.")
sandbox_app = typer.Typer(help="The simulated carrier, gateways and reseller receiver.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(resellers_app, name="resellers")
resellers_app.add_typer(reseller_tokens_app, name="token")
app.add_typer(import_app)
app.add_typer(replay_app, name="replay")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(config_app, name="config")

Reuse = Annotated[
    bool, typer.Option("--reuse", help="reuse an embedded broker/Postgres already running")
]


def load_settings(*, starting: bool = True) -> Settings:
    """The settings; in production ``config check`` runs first and its errors stop the start."""
    from infra.config_check import start_problems

    try:
        settings = with_development_defaults(Settings())
    except (ValidationError, SettingsError) as err:
        # said here, not only by ``main``: the Typer app is also run without it (tests, -m)
        typer.echo(f"simfleet: {load_problem(err)}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    configure(settings.log_format, settings.log_level, settings.secret_values().values())
    if starting and (problems := start_problems(settings)):
        typer.echo("refusing to start in production:\n" + "\n".join(problems), err=True)
        raise typer.Exit(2)
    return settings


def main() -> None:
    """The ``simfleet`` entry point: a user's mistake is one line on stderr and exit status 2."""
    try:
        app()
    except UserError as err:
        typer.echo(f"simfleet: {err}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    except EmbeddedInfraError as err:  # its message says what to set instead
        typer.echo(f"simfleet: {err}", err=True)
        raise SystemExit(1) from None


def require_running(settings: Settings, reuse: bool) -> None:
    """Commands that attach to a running simfleet's embedded broker: refuse to start an empty
    one of their own (it would hold none of the events they are about)."""
    state = settings.state_dir / "kafka" / "instance.json"
    if reuse and not settings.kafka.kafka_bootstrap_servers and reusable(state, "kafka") is None:
        raise UserError(
            f"no running simfleet to attach to (nothing recorded in {settings.state_dir}): "
            "start `simfleet run` first, or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL"
        )


def require_projection(name: str) -> None:
    known = all_projections()
    if name not in known:
        raise UserError(f"unknown projection {name!r}; known: {', '.join(known)}")


@app.command()
def run(reuse: Reuse = False) -> None:
    """Run every component in one process (embedded broker/Postgres where none is configured)."""
    run_components(None, reuse)


def run_components(role: str | None, reuse: bool) -> None:
    settings = load_settings()
    chosen = (
        components.registered_components() if role is None else components.components_by_role(role)
    )
    with composition.resolve_endpoints(settings, reuse=reuse) as endpoints:
        event_loop.run(composition.serve(settings, endpoints, chosen))


@app.command()
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
    with composition.resolve_endpoints(settings, reuse=reuse) as endpoints:
        event_loop.run(composition.serve(settings, endpoints, selected))


@app.command()
def dashboard(reuse: Reuse = False) -> None:
    """Run the operator dashboard alone."""
    run_components("dashboard", reuse)


@app.command()
def scheduler(reuse: Reuse = False) -> None:
    """Run the clock-driven requests and sweeps alone (rotation, timeouts, finalize, sync)."""
    run_components("scheduler", reuse)


@app.command()
def bridge(reuse: Reuse = False) -> None:
    """Run the gateway bridge (HTTP pushes → Kafka) alone."""
    run_components("bridge", reuse)


@sandbox_app.command("sms")
def sandbox_sms(
    to: Annotated[str, typer.Option(help="receiving number")],
    body: Annotated[str, typer.Option(help="message text")],
    sender: Annotated[str, typer.Option(help="originating number")] = "+15550001111",
    port: Annotated[str, typer.Option(help="gateway port that receives it")] = "1.01",
    bridge_url: Annotated[str | None, typer.Option(help="default: the local bridge")] = None,
) -> None:
    """Push one SMS to the bridge exactly as a Skyline gateway would."""
    from sandbox.skyline import inject_sms

    settings = load_settings()
    url = bridge_url or f"http://{settings.bridge_host}:{settings.bridge_port}"
    secret = settings.secrets.gateway_secret.get_secret_value()
    answer = asyncio.run(inject_sms(url, secret, to, body, sender=sender, port=port))
    typer.echo(json.dumps(answer))


@app.command()
def projector(reuse: Reuse = False) -> None:
    """Run the projections (Postgres read tables and the event archive) alone."""
    run_components("projector", reuse)


ReuseRunning = Annotated[
    bool,
    typer.Option(
        "--reuse/--no-reuse",
        help="attach to the embedded broker/Postgres of a running simfleet (default)",
    ),
]
FromArchive = Annotated[
    bool, typer.Option("--from-archive", help="read events from event_log instead of Kafka")
]


@replay_app.command("projection")
def replay_projection(
    name: str, from_archive: FromArchive = False, reuse: ReuseRunning = True
) -> None:
    """Rebuild one projection's tables into fresh ones, then swap them in atomically."""
    require_projection(name)
    settings = load_settings()
    require_running(settings, reuse)
    with (
        composition.resolve_endpoints(settings, reuse=reuse) as endpoints,
        progress_bar(f"rebuilding {name}") as update,
    ):
        asyncio.run(
            composition.replay_projection(
                settings, endpoints, name, from_archive=from_archive, swap=True, progress=update
            )
        )
    typer.echo(f"{name} rebuilt and swapped in")


@replay_app.command("verify")
def replay_verify(name: str, from_archive: FromArchive = False, reuse: ReuseRunning = True) -> None:
    """Rebuild into scratch tables and compare row by row; exit 0 only when identical."""
    require_projection(name)
    settings = load_settings()
    require_running(settings, reuse)
    with (
        composition.resolve_endpoints(settings, reuse=reuse) as endpoints,
        progress_bar(f"verifying {name}") as update,
    ):
        differences = asyncio.run(
            composition.replay_projection(
                settings, endpoints, name, from_archive=from_archive, swap=False, progress=update
            )
        )
    for line in differences:
        typer.echo(line)
    if differences:
        typer.echo(f"{name}: differences found (first {len(differences)} shown)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name}: identical")


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
        composition.resolve_endpoints(settings, reuse=reuse) as endpoints,
        progress_bar("re-publishing") as update,
    ):
        sent = asyncio.run(
            composition.replay_publish(
                settings,
                endpoints,
                types=types.split(",") if types else None,
                since=_aware(since),
                until=_aware(until),
                progress=update,
            )
        )
    typer.echo(f"re-published {sent} event(s)")


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@app.command()
def docs(
    write: Annotated[bool, typer.Option("--write", help="regenerate docs/asyncapi.yaml")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 if docs/asyncapi.yaml is stale")
    ] = False,
    port: Annotated[int, typer.Option(help="port to serve the document on")] = 8095,
) -> None:
    """Serve (or write/check) the AsyncAPI document of every topic and message schema."""
    from infra import asyncapi
    from infra.asyncapi import DOC_PATH, docs_app
    from infra.http import serve_http

    document = components.asyncapi_document()
    if write:
        DOC_PATH.write_text(document)
        typer.echo(f"wrote {DOC_PATH}")
    elif check:
        if not DOC_PATH.exists() or DOC_PATH.read_text() != document:
            typer.echo("docs/asyncapi.yaml is stale: run `make asyncapi`", err=True)
            raise typer.Exit(1)
        typer.echo("docs/asyncapi.yaml is up to date")
    else:
        # served, the server address is this deployment's own
        bootstrap = load_settings().kafka.kafka_bootstrap_servers
        served = asyncapi.render(bootstrap) if bootstrap else document

        async def serve_docs() -> None:
            async with serve_http(docs_app(served), port=port) as url:
                typer.echo(f"AsyncAPI document at {url}/ ({url}/asyncapi.yaml); Ctrl-C stops")
                await asyncio.Event().wait()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_docs())


@app.command()
def migrate(reuse: Reuse = False) -> None:
    """Apply pending Postgres migrations (safe to run concurrently)."""
    settings = load_settings()
    with composition.resolve_endpoints(settings, reuse=reuse) as endpoints:
        from infra.postgres import migrate as apply

        applied = asyncio.run(apply(endpoints.database_url))
        typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@topics_app.command("ensure")
def topics_ensure(
    reuse: Reuse = False,
    check: Annotated[
        bool, typer.Option("--check", help="report drift only, repair nothing; exit 1 if any")
    ] = False,
) -> None:
    """Create missing topics (and their DLQs); report and repair drifted topic configuration."""
    settings = load_settings()
    with composition.resolve_endpoints(settings, reuse=reuse) as endpoints:
        from aiokafka.errors import KafkaError

        from infra.kafka_topics import reconcile_topics

        try:
            report = asyncio.run(
                reconcile_topics(endpoints.kafka_bootstrap, settings.kafka, repair=not check)
            )
        except (KafkaError, OSError) as err:
            typer.echo(f"the broker could not describe or alter topics: {err!r}", err=True)
            raise typer.Exit(1) from err
    created = report.created
    typer.echo(f"created {len(created)} topic(s): {', '.join(created) or 'all present'}")
    for drift in report.drifts:
        typer.echo(f"drift: {drift}")
    if not report.drifts:
        typer.echo("no drift: every topic is configured as specified")
    if any(not d.repaired for d in report.drifts):
        raise typer.Exit(1)


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic map: name, key, partitions, event types."""
    from events.topics import ALL_TOPICS

    settings = load_settings()
    for topic in ALL_TOPICS:
        partitions = settings.kafka.partitions_for(topic.name, topic.partitions)
        name = topic.full_name(settings.kafka.topic_prefix)
        typer.echo(f"{name}  key={topic.key}  partitions={partitions}")
        for event_type in sorted(topic.types):
            typer.echo(f"    {event_type}")


@schemas_app.command("export")
def schemas_export() -> None:
    """Regenerate events/schemas/*.json from the event models."""
    from events.schema_export import write_schemas

    typer.echo(f"wrote {len(write_schemas())} schema(s)")


@schemas_app.command("check")
def schemas_check() -> None:
    """Exit 1 when the checked-in schemas differ from the models."""
    from events.schema_export import stale_schemas

    stale = stale_schemas()
    if stale:
        typer.echo("stale schemas (run `make schemas`): " + ", ".join(stale), err=True)
        raise typer.Exit(1)
    typer.echo("schemas up to date")


@config_app.command("check")
def config_check() -> None:
    """Report what the configuration lacks (values are never printed); exit 1 if anything."""
    from infra.config_check import load_and_check

    findings, error = load_and_check()
    if error:
        typer.echo(f"invalid configuration: {error}", err=True)
        raise typer.Exit(1)
    for finding in findings:
        typer.echo(f"{finding.level:8} {finding.name:26} {finding.note}")
    missing = [f.name for f in findings if f.level == "missing"]
    if missing:
        typer.echo(f"missing: {', '.join(missing)}", err=True)
        raise typer.Exit(1)
    typer.echo("configuration complete")


@config_app.command("reference")
def config_reference(
    write: Annotated[bool, typer.Option("--write", help="update the table in README.md")] = False,
) -> None:
    """Every environment variable with its default (the README's configuration table)."""
    from infra.settings_reference import README, render, with_reference

    if write:
        README.write_text(with_reference(README.read_text()))
        typer.echo(f"updated {README}")
    else:
        typer.echo(render())


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration with secrets masked."""
    settings = load_settings(starting=False)
    typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2, default=str))


if __name__ == "__main__":
    main()

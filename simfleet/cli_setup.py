"""The commands that set up and describe what simfleet runs on: ``migrate``, ``topics …``,
``schemas …`` and ``docs`` (the AsyncAPI document); mounted by ``simfleet.cli``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from simfleet import components
from simfleet.cli_settings import Reuse, load_settings
from simfleet.endpoints import resolve_endpoints

# ``docs`` and ``migrate`` are top-level commands; the groups are mounted by name
setup_app = typer.Typer()
topics_app = typer.Typer(help="Kafka topics.")
schemas_app = typer.Typer(help="JSON Schemas of the events.")


@setup_app.command()
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


@setup_app.command()
def migrate(reuse: Reuse = False) -> None:
    """Apply pending Postgres migrations (safe to run concurrently)."""
    settings = load_settings()
    with resolve_endpoints(settings, reuse=reuse) as endpoints:
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
    with resolve_endpoints(settings, reuse=reuse) as endpoints:
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

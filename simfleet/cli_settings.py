"""What every ``simfleet`` command starts from: its settings, the ``--reuse`` options, and the
check that a command meant for a running simfleet has one to attach to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from infra.dev_secrets import with_development_defaults
from infra.embedded.service import reusable
from infra.logging import configure
from infra.settings import Settings
from infra.user_errors import EXIT_USAGE, UserError, load_problem

Reuse = Annotated[
    bool, typer.Option("--reuse", help="reuse an embedded broker/Postgres already running")
]
# for commands about a running simfleet's events: attaching is their normal case
ReuseRunning = Annotated[
    bool,
    typer.Option(
        "--reuse/--no-reuse",
        help="attach to the embedded broker/Postgres of a running simfleet (default)",
    ),
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


def require_running(settings: Settings, reuse: bool) -> None:
    """Commands that attach to a running simfleet's embedded broker: refuse to start an empty
    one of their own (it would hold none of the events they are about)."""
    state = settings.state_dir / "kafka" / "instance.json"
    if reuse and not settings.kafka.kafka_bootstrap_servers and reusable(state, "kafka") is None:
        raise UserError(
            f"no running simfleet to attach to (nothing recorded in {settings.state_dir}): "
            "start `simfleet run` first, or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL"
        )


def as_utc(value: datetime | None) -> datetime | None:
    """A time option as typed; one without a zone is read as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

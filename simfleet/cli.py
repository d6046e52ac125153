"""The ``simfleet`` command line: the commands, by theme, live in ``simfleet/cli_*.py``; this
module mounts them (their order is the order ``simfleet --help`` lists them in) and is the
entry point."""

from __future__ import annotations

import typer

from infra.embedded.service import EmbeddedInfraError
from infra.user_errors import EXIT_USAGE, UserError
from simfleet.cli_config import config_app
from simfleet.cli_import import import_app
from simfleet.cli_replay import replay_app
from simfleet.cli_reseller_tokens import app as reseller_tokens_app
from simfleet.cli_resellers import app as resellers_app
from simfleet.cli_run import run_app
from simfleet.cli_sandbox import sandbox_app
from simfleet.cli_setup import schemas_app, setup_app, topics_app

app = typer.Typer(help="simfleet: SIM fleet provisioning, verification and reseller webhooks.")
app.add_typer(run_app)
app.add_typer(setup_app)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(resellers_app, name="resellers")
resellers_app.add_typer(reseller_tokens_app, name="token")
app.add_typer(import_app)
app.add_typer(replay_app, name="replay")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(config_app, name="config")


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


if __name__ == "__main__":
    main()

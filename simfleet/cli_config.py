"""``simfleet config …``: what the configuration lacks, every setting with its default, and the
effective configuration (secrets masked)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from simfleet.cli_settings import load_settings

config_app = typer.Typer(help="Configuration.")


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

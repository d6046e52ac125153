"""``simfleet resellers token …``: reseller API tokens (issue, list, revoke), for operators.

A token is printed once, to this terminal; only its hash is kept. The events name the
operating-system user as the actor (``cli:<user>``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from infra.actors import cli_actor
from infra.clock import SystemClock
from infra.settings import Settings
from producers.reseller_commands import ResellerCommands
from producers.reseller_tokens import ResellerTokens
from simfleet.cli_resellers import Reason, _run
from simfleet.cli_settings import ReuseRunning

app = typer.Typer(help="Reseller API tokens: what a reseller signs in to its API and portal with.")


def _tokens(commands: ResellerCommands) -> ResellerTokens:
    return ResellerTokens(commands, SystemClock())


@app.command()
def issue(
    reseller_id: str,
    name: Annotated[str, typer.Option(help="who or what uses it; the audit names it")],
    write: Annotated[bool, typer.Option("--write", help="read-write (default: read)")] = False,
    days: Annotated[
        float | None, typer.Option(help="valid for; default RESELLER_API_TOKEN_DAYS")
    ] = None,
    reuse: ReuseRunning = True,
) -> None:
    """Issue a token; prints it once."""
    scope: Literal["read", "read-write"] = "read-write" if write else "read"
    valid = days or Settings().reseller_api.token_days
    issued = _run(lambda c: _tokens(c).issue(reseller_id, name, scope, valid, cli_actor()), reuse)
    typer.echo(f"token {issued.token_id} ({issued.name}, {issued.scope}) of {issued.reseller_id}")
    typer.echo(f"valid until {issued.expires_at.isoformat()}")
    typer.echo(f"token (shown once, hand it over now): {issued.token}")


@app.command("list")
def list_(reseller_id: str, reuse: ReuseRunning = True) -> None:
    """A reseller's tokens (never the tokens themselves)."""
    found = _run(lambda c: _tokens(c).tokens(reseller_id), reuse)
    for t in found:
        state = (
            f"revoked {t.revoked_at.isoformat()}"
            if t.revoked_at
            else f"until {t.expires_at.isoformat()}"
        )
        used = t.last_used_at.isoformat() if t.last_used_at else "never"
        typer.echo(
            f"{t.token_id}  {t.name}  {t.scope}  {state}  last used {used}  issued by {t.issued_by}"
        )
    if not found:
        typer.echo("no tokens")


@app.command()
def revoke(
    reseller_id: str, token_id: str, reason: Reason = "", reuse: ReuseRunning = True
) -> None:
    """Revoke a token: it stops working at once (as soon as the projector applied it)."""
    event_id = _run(lambda c: _tokens(c).revoke(reseller_id, token_id, cli_actor(), reason), reuse)
    typer.echo(f"token {token_id} revoked ({event_id})")

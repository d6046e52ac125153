"""``simfleet sandbox …``: drive the simulated carrier and gateways by hand."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from simfleet.cli_settings import load_settings

sandbox_app = typer.Typer(help="The simulated carrier, gateways and reseller receiver.")


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

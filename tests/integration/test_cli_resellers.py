"""``simfleet resellers …`` against the test broker and database, as an operator types it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from infra.settings import Settings
from simfleet.cli_resellers import app

pytestmark = pytest.mark.integration


def test_the_reseller_commands(
    settings: Settings, topics: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.postgres.database_url is not None
    dsn = settings.postgres.database_url.get_secret_value()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DATABASE_URL": dsn,
        "WEBHOOK_SEALING_KEY": Fernet.generate_key().decode(),
        # development would let webhooks reach loopback (the demo receiver): say no explicitly
        "WEBHOOK_ALLOW_PRIVATE": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli = CliRunner()

    created = cli.invoke(app, ["create", "acme", "--name", "Acme"])
    assert created.exit_code == 0, created.output
    # what the resellers projection (not running here) would have written
    asyncio.run(_execute(dsn, "INSERT INTO resellers VALUES ('acme', 'Acme', now())"))
    added = cli.invoke(
        app,
        ["add-endpoint", "acme", "https://hooks.example.com/sms", "--event-type", "sms.received"],
    )
    refused = cli.invoke(app, ["add-endpoint", "acme", "https://127.0.0.1/hook"])
    sims = tmp_path / "sims.csv"
    sims.write_text("iccid\n8901260000000000001\n8901260000000000002\nnot-an-iccid\n")
    assigned = cli.invoke(app, ["assign", "acme", "8901260000000000003", "--file", str(sims)])

    assert added.exit_code == 0, added.output
    assert "signing secret (shown once, store it now): whsec_" in added.output
    assert (refused.exit_code, "refused: endpoint address 127.0.0.1 is not public") == (
        2,
        refused.output.strip(),
    )
    assert assigned.exit_code == 0, assigned.output
    assert "assigned 3 SIM(s) to acme" in assigned.output
    assert "line 4: not an ICCID" in assigned.output

    # a disabled endpoint (as the projection shows one) with a delivery it missed
    asyncio.run(_execute(dsn, """
        INSERT INTO reseller_webhooks (endpoint_id, reseller_id, url, sealed_secret, enabled,
            health, disabled_reason, disabled_at, created_at)
        VALUES ('ep-off', 'acme', 'https://hooks.example.com/off', 'x', false, 'disabled',
            'endpoint answered 410 Gone', now(), now());
        INSERT INTO webhook_claims (message_id, endpoint_id, reseller_id, event_type,
            correlationid, body, state, lease_until, started_at, created_at)
        VALUES ('m-1', 'ep-off', 'acme', 'sms.received', 'c', '{}', 'skipped', now(), now(), now());
    """))  # fmt: skip
    listed = cli.invoke(app, ["list"])
    declined = cli.invoke(app, ["enable-endpoint", "acme", "ep-off"], input="n\n")
    enabled = cli.invoke(app, ["enable-endpoint", "acme", "ep-off", "--redeliver"])
    not_disabled = cli.invoke(app, ["enable-endpoint", "acme", "ep-off-unknown", "--redeliver"])

    assert "DISABLED  health=disabled" in listed.output
    assert "(endpoint answered 410 Gone)" in listed.output
    assert "1 deliveries failed or were skipped since" in declined.output
    assert "redelivery" not in declined.output
    assert "endpoint ep-off enabled" in declined.output
    assert enabled.exit_code == 0, enabled.output
    assert "redelivery of 1 missed deliveries requested" in enabled.output
    assert not_disabled.exit_code == 2


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()

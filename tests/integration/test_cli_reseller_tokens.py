"""``simfleet resellers token …`` against the test broker and database, as an operator types it:
the token printed once and published only as its hash; list without it; revoke."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from events.topics import RESELLER_REGISTRY
from infra.reseller_tokens import token_hash
from infra.settings import Settings
from simfleet.cli import app
from tests.integration.test_cli_resellers import _execute

pytestmark = pytest.mark.integration
TOKEN = re.compile(r"token \(shown once, hand it over now\): (sfr_\S+)")


async def registry_values(settings: Settings) -> bytes:
    consumer = AIOKafkaConsumer(
        RESELLER_REGISTRY.full_name(settings.kafka.topic_prefix),
        bootstrap_servers=settings.kafka.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()
    return b" ".join(r.value for records in batch.values() for r in records)


async def _project(dsn: str, token_id: str, hashed: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO reseller_tokens (token_id, reseller_id, name, scope, token_hash, "
            "expires_at, issued_by, issued_at) VALUES ($1, 'acme', 'billing', 'read-write', $2, "
            "now() + interval '30 days', 'cli:tokenist', now())",
            token_id,
            hashed,
        )
    finally:
        await conn.close()


def test_the_token_commands(
    settings: Settings, topics: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.postgres.database_url is not None
    dsn = settings.postgres.database_url.get_secret_value()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DATABASE_URL": dsn,
        "WEBHOOK_SEALING_KEY": Fernet.generate_key().decode(),
        "LOGNAME": "tokenist",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUDO_USER", raising=False)
    cli = CliRunner()
    asyncio.run(_execute(dsn, "INSERT INTO resellers VALUES ('acme', 'Acme', now())"))

    issued = cli.invoke(
        app, ["resellers", "token", "issue", "acme", "--name", "billing", "--write", "--days", "30"]
    )
    unknown = cli.invoke(app, ["resellers", "token", "issue", "nobody", "--name", "x"])
    assert issued.exit_code == 0, issued.output
    assert "(billing, read-write) of acme" in issued.output
    found = TOKEN.search(issued.output)
    assert found is not None
    token = found.group(1)
    assert unknown.exit_code == 2
    assert "unknown reseller 'nobody'" in unknown.output

    published = asyncio.run(registry_values(settings)).decode()
    assert token_hash(token) in published
    assert token not in published
    assert '"requested_by":"cli:tokenist"' in published

    # what the reseller_tokens projection (not running here) would have written
    token_id = re.search(r"token (tok_\w+)", issued.output)
    assert token_id is not None
    asyncio.run(_project(dsn, token_id.group(1), token_hash(token)))
    listed = cli.invoke(app, ["resellers", "token", "list", "acme"])
    revoked = cli.invoke(
        app, ["resellers", "token", "revoke", "acme", token_id.group(1), "--reason", "rotated"]
    )
    missing = cli.invoke(app, ["resellers", "token", "revoke", "acme", "tok_nope"])

    assert f"{token_id.group(1)}  billing  read-write  until" in listed.output
    assert token not in listed.output
    assert revoked.exit_code == 0, revoked.output
    assert missing.exit_code == 2

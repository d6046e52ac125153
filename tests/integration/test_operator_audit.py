"""The operator audit end to end: commands through the dashboard, the JSON API, ``/api/run`` and
the CLI → Kafka → the ``operator_audit`` projection (the real engine) → ``/audit`` and
``/api/audit``, with the right actor and reason and no secret anywhere."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from dashboard.app import create_dashboard_app
from infra.bus import Bus
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings
from projections.audit import OperatorAuditProjection
from projections.replay import rebuild
from sandbox.helix_world import make_iccid, make_imei
from simfleet.cli import app as cli_app
from tests.integration.test_dashboard import (
    NOW,
    PASSWORD,
    RUN_SECRETS,
    USER,
    dashboard_settings,
)
from tests.support import dashboard_world as w
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.projecting import projecting

pytestmark = pytest.mark.integration

OS_USER = "auditor"
AUDIT_ROWS = "SELECT * FROM operator_audit ORDER BY requested_at, action"


@dataclass
class Audited:
    http: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    pool: asyncpg.Pool
    settings: Settings
    bus: Bus
    bootstrap: str
    dsn: str

    async def rebuilt_differences(self) -> list[str]:
        """``simfleet replay verify operator_audit``: rebuilt from the topics, compared."""
        return await rebuild(
            OperatorAuditProjection(),
            dsn=self.dsn,
            live_pool=self.pool,
            bus=self.bus,
            bootstrap=self.bootstrap,
            kafka=self.settings.kafka,
            from_archive=False,
            swap=False,
            progress=lambda done, total: None,
        )

    async def rows(self, count: int) -> dict[str, asyncpg.Record]:
        found = await eventually(
            lambda: self.pool.fetch(AUDIT_ROWS), until=lambda rows: len(rows) >= count, within=20
        )
        return {r["action"]: r for r in found}

    async def form(self, action: str, fields: dict[str, Any]) -> httpx.Response:
        html = (await self.http.get("/controls")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token
        return await self.http.post(action, data={"csrf_token": token.group(1), **fields})


@pytest.fixture
async def audited(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[Audited]:
    configured = dashboard_settings(settings)
    pool = await create_pool(database_url)
    async with pool.acquire() as conn:
        await w.seed(conn, NOW)
        await conn.execute("TRUNCATE operator_audit, operator_audit_events")  # only what we do
    broker = build_broker(configured.kafka, kafka_bootstrap)
    async with broker:
        bus = Bus(broker, configured.kafka.topic_prefix)
        app = create_dashboard_app(configured, pool, bus, ControlledClock(NOW))
        try:
            async with (
                projecting(
                    [OperatorAuditProjection()],
                    bootstrap=kafka_bootstrap,
                    kafka=configured.kafka,
                    pool=pool,
                    bus=bus,
                ),
                serve_http(app) as url,
                httpx.AsyncClient(base_url=url, auth=(USER, PASSWORD), timeout=30) as http,
                httpx.AsyncClient(base_url=url, timeout=30) as anonymous,
            ):
                yield Audited(http, anonymous, pool, configured, bus, kafka_bootstrap, database_url)
        finally:
            await pool.close()


def cli_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.postgres.database_url is not None
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DATABASE_URL": settings.postgres.database_url.get_secret_value(),
        "WEBHOOK_SEALING_KEY": Fernet.generate_key().decode(),
        "USER": OS_USER,
        "LOGNAME": OS_USER,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUDO_USER", raising=False)


async def test_dashboard_api_and_run_commands_land_in_the_audit_with_actor_and_reason(
    audited: Audited,
) -> None:
    cancelled = await audited.form(
        "/sims/actions",
        {"action": "cancel", "iccids": w.FEATURED, "confirm": "yes", "reason": "lost in transit"},
    )
    restored = await audited.form(  # the controls' optional reason, on a harmless action
        "/sims/actions", {"action": "restore", "iccids": w.SUSPENDED, "reason": "paid up"}
    )
    suspended = await audited.http.post(
        "/api/sims/suspend", json={"iccids": [w.FILLERS[0], w.FILLERS[1]], "reason": "fraud check"}
    )
    rotated = await audited.anonymous.post(
        "/api/run/rotate", headers={"authorization": f"Bearer {RUN_SECRETS['rotate']}"}
    )
    run_cancel = await audited.anonymous.get(
        "/api/run/cancel",
        params={"secret": RUN_SECRETS["cancel"], "iccids": w.PENDING, "reason": "never shipped"},
    )
    assert [r.status_code for r in (cancelled, restored, suspended, rotated, run_cancel)] == [
        200
    ] * 5

    rows = await audited.rows(5)
    assert (rows["restore"]["actor"], rows["restore"]["reason"]) == (f"dashboard:{USER}", "paid up")

    suspend, rotate = rows["suspend"], rows["rotate"]
    cancels = {
        r["actor"]: r for r in await audited.pool.fetch(AUDIT_ROWS) if r["action"] == "cancel"
    }
    by_dashboard, by_run = cancels[f"dashboard:{USER}"], cancels["run:CANCEL_SECRET"]
    assert (by_dashboard["channel"], by_run["channel"]) == ("dashboard", "run")
    assert (by_dashboard["subjects"], by_dashboard["reason"]) == ([w.FEATURED], "lost in transit")
    assert (by_run["subjects"], by_run["reason"]) == ([w.PENDING], "never shipped")
    assert (suspend["actor"], suspend["channel"], suspend["reason"]) == (
        f"api:{USER}",
        "api",
        "fraud check",
    )
    assert suspend["subjects"] == sorted([w.FILLERS[0], w.FILLERS[1]])
    assert suspend["events"] == 2
    assert (rotate["actor"], rotate["subjects"]) == ("run:ADMIN_RUN_SECRET", [w.FEATURED])

    api = (await audited.http.get("/api/audit", params={"actor": "run:CANCEL_SECRET"})).json()
    assert [(r["action"], r["subjects"], r["reason"]) for r in api["rows"]] == [
        ("cancel", [w.PENDING], "never shipped")
    ]
    by_sim = (await audited.http.get("/api/audit", params={"iccid": w.FEATURED})).json()
    assert {(r["action"], r["actor"]) for r in by_sim["rows"]} == {
        ("cancel", f"dashboard:{USER}"),
        ("rotate", "run:ADMIN_RUN_SECRET"),
    }
    page = (await audited.http.get("/audit", params={"action": "suspend"})).text
    assert "fraud check" in page
    assert f"api:{USER}" in page
    assert f'href="/sims/{w.FILLERS[0]}"' in page
    assert "lost in transit" not in page  # filtered out
    await assert_no_secret(audited)
    assert await audited.rebuilt_differences() == []


async def test_cli_commands_land_in_the_audit_as_the_os_user(
    audited: Audited, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_environment(audited.settings, monkeypatch)
    sheet = tmp_path / "sims.csv"
    new_sims = [make_iccid(901), make_iccid(902)]
    sheet.write_text(
        "iccid,imei,reseller_id\n"
        + "".join(f"{i},{make_imei(n)},acme\n" for n, i in enumerate(new_sims))
    )
    cli = CliRunner()

    imported = await asyncio.to_thread(cli.invoke, cli_app, ["import", str(sheet)])
    no_reason = await asyncio.to_thread(
        cli.invoke, cli_app, ["resellers", "remove-endpoint", "acme", w.ENDPOINT]
    )
    removed = await asyncio.to_thread(
        cli.invoke,
        cli_app,
        ["resellers", "remove-endpoint", "acme", w.ENDPOINT, "--reason", "acme moved"],
    )

    assert imported.exit_code == 0, imported.output
    assert no_reason.exit_code == 2  # --reason is required
    assert removed.exit_code == 0, removed.output
    rows = await audited.rows(2)
    assert (rows["import"]["actor"], rows["import"]["channel"]) == (f"cli:{OS_USER}", "cli")
    assert rows["import"]["subjects"] == sorted(new_sims)
    assert rows["import"]["events"] == 4  # an activation and an assignment per row
    remove = rows["remove-endpoint"]
    assert (remove["actor"], remove["reason"], remove["subjects"], remove["target"]) == (
        f"cli:{OS_USER}",
        "acme moved",
        ["acme"],
        w.ENDPOINT,
    )
    page = (await audited.http.get("/audit", params={"actor": f"cli:{OS_USER}"})).text
    assert "acme moved" in page
    assert f'href="/sims/{new_sims[0]}"' in page
    await assert_no_secret(audited)


async def assert_no_secret(audited: Audited) -> None:
    stored = await audited.pool.fetchval("SELECT string_agg(a::text, ' ') FROM operator_audit a")
    shown = (await audited.http.get("/audit")).text + (await audited.http.get("/api/audit")).text
    for secret in (*RUN_SECRETS.values(), PASSWORD, w.SEALED_SECRET):
        assert secret not in stored
        assert secret not in shown


INSERT_AUDIT = """
INSERT INTO operator_audit (command_id, action, actor, channel, requested_at, reason, target,
                            subjects, events)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)
"""


async def test_the_audit_filters_and_pages_newest_first(
    settings: Settings, database_url: str
) -> None:
    configured = dashboard_settings(settings)
    pool = await create_pool(database_url)
    many = [make_iccid(n) for n in range(70)]
    rows: list[tuple[Any, ...]] = [
        (f"cmd-{n:03d}", "rotate" if n % 2 else "suspend", f"api:user{n % 3}", "api",
         NOW - timedelta(minutes=n), None, [make_iccid(n)], 1)
        for n in range(60)
    ]  # fmt: skip
    rows.append(("cmd-big", "cancel", "cli:bob", "cli", NOW, "end of contract", many, 70))
    await pool.executemany(INSERT_AUDIT, rows)
    app = create_dashboard_app(
        configured, pool, Bus(build_broker(configured.kafka, "x")), ControlledClock(NOW)
    )
    try:
        async with (
            serve_http(app) as url,
            httpx.AsyncClient(base_url=url, auth=(USER, PASSWORD), timeout=30) as http,
        ):
            seen, older = [], ""
            for _ in range(4):
                page = (await http.get("/api/audit", params={"limit": 25, "older": older})).json()
                seen += [r["command_id"] for r in page["rows"]]
                older = page["older"] or ""
                if not older:
                    break
            user1 = (await http.get("/api/audit", params={"actor": "api:user1"})).json()
            suspends = (await http.get("/api/audit", params={"action": "suspend"})).json()
            by_sim = (await http.get("/api/audit", params={"iccid": make_iccid(69)})).json()
            cli = (await http.get("/api/audit", params={"channel": "cli"})).json()
            unknown = await http.get("/api/audit", params={"action": "explode"})
            garbled = await http.get("/api/audit", params={"older": "not-a-cursor"})
            html = (await http.get("/audit", params={"channel": "cli"})).text
            second = (
                await http.get("/audit", params={"older": f"{NOW.isoformat()}|cmd-big|cancel"})
            ).text
    finally:
        await pool.close()

    assert seen == ["cmd-big", *(f"cmd-{n:03d}" for n in range(60))]  # newest first, each once
    assert len(user1["rows"]) == 20
    assert {r["actor"] for r in user1["rows"]} == {"api:user1"}
    assert {r["action"] for r in suspends["rows"]} == {"suspend"}
    assert [r["command_id"] for r in by_sim["rows"]] == ["cmd-big"]  # only the big cancel has it
    [big] = cli["rows"]
    assert (big["subject_count"], len(big["subjects"]), big["subject_kind"]) == (70, 50, "sim")
    assert unknown.status_code == 400
    assert garbled.status_code == 200
    assert garbled.json()["rows"][0]["command_id"] == "cmd-big"
    assert "end of contract" in html
    assert "… 20 more" in html
    assert 'rel="next"' not in html
    assert "end of contract" not in second
    assert f'href="/sims/{make_iccid(0)}"' in second

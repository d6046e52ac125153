import httpx
import pytest

from infra.http import serve_http
from infra.kafka import build_broker
from infra.metrics import WEBHOOK_ATTEMPTS
from infra.ops import broker_check, ops_app, postgres_check
from infra.postgres import create_pool
from infra.settings import Settings

pytestmark = pytest.mark.integration


async def test_ready_only_while_broker_and_postgres_answer(
    settings: Settings, kafka_bootstrap: str, database_url: str
) -> None:
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    pool = await create_pool(database_url)
    checks = {"broker": broker_check(broker), "postgres": postgres_check(pool)}
    WEBHOOK_ATTEMPTS.labels("delivered").inc()
    try:
        async with serve_http(ops_app(checks)) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"broker": True, "postgres": True}
            metrics = (await http.get("/metrics")).text
            assert 'simfleet_webhook_attempts_total{outcome="delivered"}' in metrics
            await pool.close()
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["postgres"] is False
    finally:
        await broker.stop()
        await pool.close()

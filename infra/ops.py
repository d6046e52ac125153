"""Health and metrics over HTTP: ``/healthz`` (alive), ``/readyz`` (broker and Postgres answer),
``/metrics`` (Prometheus). Mounted by every process, on its own port where it has no HTTP app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import APIRouter, FastAPI, Response
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from infra.http import NO_TELEMETRY

Check = Callable[[], Awaitable[bool]]


def broker_check(broker: KafkaBroker, timeout_s: float = 2.0) -> Check:
    async def check() -> bool:
        return bool(await broker.ping(timeout=timeout_s))

    return check


def postgres_check(pool: asyncpg.Pool, timeout_s: float = 2.0) -> Check:
    async def check() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await pool.fetchval("SELECT 1") == 1)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    return check


def ops_router(
    checks: dict[str, Check], before_scrape: Callable[[], Awaitable[object]] | None = None
) -> APIRouter:
    """``before_scrape`` refreshes gauges measured from outside the process (consumer lag)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, object]:
        results = dict(
            zip(checks, await asyncio.gather(*(c() for c in checks.values())), strict=True)
        )
        ready = all(results.values())
        response.status_code = 200 if ready else 503
        return {"ready": ready, "checks": results}

    @router.get("/metrics")
    async def metrics() -> Response:
        if before_scrape is not None:
            await before_scrape()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def ops_app(
    checks: dict[str, Check], before_scrape: Callable[[], Awaitable[object]] | None = None
) -> FastAPI:
    app = FastAPI(
        title="simfleet operations",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NO_TELEMETRY,
    )
    app.include_router(ops_router(checks, before_scrape))
    return app

"""Running an ASGI app inside a simfleet process (bridge, dashboard, sandbox servers)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from fastapi.telemetry import TelemetryConfig

from infra.http_limits import DEFAULT_MAX_HEAD_BYTES, bounded_protocol
from infra.user_errors import UserError

# FastAPI's native OpenTelemetry, off: simfleet's metrics are Prometheus (infra.metrics) and no
# tracer is configured, yet with it on every request asks the global OpenTelemetry providers
# whether one is (environment lookups included), ~17 µs per request: 5 % of the bridge's push.
NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


class _OwnedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # the owning process handles SIGINT/SIGTERM and stops every server it runs
        yield


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PortTaken(UserError):
    pass


def ensure_free(host: str, port: int) -> None:
    """A configured port another process holds is the user's to resolve, not a traceback."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as err:
            raise PortTaken(
                f"cannot listen on {host}:{port} ({err.strerror}): another process has it; stop "
                "it or choose another port (SIMFLEET_BRIDGE_PORT, SIMFLEET_DASHBOARD_PORT, "
                "SIMFLEET_OPS_PORT, WEBHOOK_SANDBOX_RECEIVER_PORT)"
            ) from None


@contextlib.asynccontextmanager
async def serve_http(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    **options: Any,
) -> AsyncIterator[str]:
    """Serves ``app`` until the block exits; yields its base URL (``port=0`` picks a free one).
    A request whose line and headers pass ``max_head_bytes`` is answered 431."""
    if port:
        ensure_free(host, port)
    port = port or free_port(host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=bounded_protocol(max_head_bytes),
        **options,
    )
    server = _OwnedServer(config)
    task = asyncio.create_task(server.serve(), name=f"http:{port}")
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError(f"HTTP server on {host}:{port} did not start")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task

"""The event loop simfleet's long-running processes run on: uvloop where it is installed.

uvloop (libuv) spends less CPU per socket operation than asyncio's selector loop: every gateway
push, Kafka produce and acknowledgement, carrier call and Postgres round trip goes through it.
A plain ``uvicorn.run`` picks it by itself (``loop="auto"``); simfleet serves its HTTP apps inside
its own loop (``infra.http.serve_http``), so the loop is chosen here, once, for every service.
Without uvloop (Windows, where it does not exist) asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default loop) where uvloop is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the service loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)

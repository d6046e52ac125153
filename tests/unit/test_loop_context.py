"""Handler dependencies resolve on the event loop, not in a worker thread."""

import threading
from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaBroker, TestKafkaBroker

from infra.context import LoopContext


async def test_loop_context_resolves_in_the_event_loop_thread_unlike_context() -> None:
    resolved_in: dict[str, str] = {}

    def probe(name: str) -> object:
        def initial() -> object:
            resolved_in[name] = threading.current_thread().name
            return object()

        return initial

    broker = KafkaBroker()

    @broker.subscriber("probe")
    async def handler(
        on_loop: Annotated[object, LoopContext("on_loop", initial=probe("loop"))],
        plain: Annotated[object, Context("plain", initial=probe("plain"))],
    ) -> None:
        assert on_loop is not None
        assert plain is not None

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{}", "probe")

    assert resolved_in["loop"] == threading.main_thread().name
    # what LoopContext avoids: fast_depends resolves a sync custom field in a worker thread
    assert resolved_in["plain"] != threading.main_thread().name

"""Handler dependencies from FastStream's context, resolved on the event loop.

FastStream's ``Context`` is a fast_depends custom field with a synchronous ``use``, and
fast_depends runs every synchronous dependency of an async handler in a worker thread: one
thread hop per ``Context`` parameter per message. With five per handler that was the largest
CPU cost of a busy consumer (bench/bench_provisioning.py, profiled). ``LoopContext`` resolves
the same way but as a coroutine, so it is awaited in place.
"""

from __future__ import annotations

from typing import Annotated, Any

from faststream._internal.context.context_type import Context
from faststream.kafka.message import KafkaMessage


class LoopContext(Context):
    """``faststream.Context`` builds this class (its public name is a factory function)."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved


MessageDep = Annotated[KafkaMessage, LoopContext("message")]

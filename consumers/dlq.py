"""Dead letters: what a consumer cannot process goes to ``<topic>.dlq`` with the error.

The record is kept verbatim (value, key, headers) with ``dlq_*`` headers naming where it came
from and why, so an operator can inspect, fix and re-publish it; the source partition moves on.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from infra.kafka import Bus

log = structlog.get_logger("simfleet.dlq")

MAX_ERROR_CHARS = 2000


class DeadLetters:
    def __init__(self, bus: Bus, consumer: str) -> None:
        self._bus = bus
        self._consumer = consumer

    async def send(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, str],
        error: BaseException | str,
        event_id: str | None = None,
    ) -> None:
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        dead_headers = {
            **headers,
            "dlq_error": reason[:MAX_ERROR_CHARS],
            "dlq_topic": topic,
            "dlq_partition": str(partition),
            "dlq_offset": str(offset),
            "dlq_consumer": self._consumer,
        }
        await self._bus.publish_raw(f"{topic}.dlq", value, key=key, headers=dead_headers)
        log.error(
            "event_dead_lettered",
            consumer=self._consumer,
            event_id=event_id or headers.get("ce_id"),
            event_type=headers.get("ce_type"),
            topic=topic,
            partition=partition,
            offset=offset,
            error=reason[:MAX_ERROR_CHARS],
        )

"""Consumer lag as Kafka sees it: per consumer group of this deployment (its topic prefix), the
records between each partition's end and the group's committed offset, summed.

Measured from outside the consumers (the scheduler's alert check), so it covers every process.
A broker that cannot answer gives ``None`` ("not measured"), never a made-up zero. ``LagMeter``
serves it to ``/metrics`` (``simfleet_consumer_group_lag``), the dashboard overview and alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from events.topics import ALL_TOPICS
from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

log = structlog.get_logger("simfleet.kafka")


async def group_lags(bootstrap: str, kafka: KafkaSettings) -> dict[str, float] | None:
    secure = client_options(kafka)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=servers(bootstrap), client_id="simfleet-lag", **secure
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers(bootstrap),
        enable_auto_commit=False,
        client_id="simfleet-lag",
        **secure,
    )
    try:
        await admin.start()
        await consumer.start()
        lags = await _measured(admin, consumer, kafka.topic_prefix)
    except (KafkaError, OSError) as err:
        log.warning("consumer_lag_not_measured", error=repr(err))
        return None
    else:
        return lags
    finally:
        await consumer.stop()
        await admin.close()


async def _measured(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, prefix: str
) -> dict[str, float]:
    groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)]
    partitions = await _partitions(admin, prefix)
    ends = await consumer.end_offsets(partitions) if partitions else {}
    lags: dict[str, float] = {}
    for group in sorted(groups):
        # name the partitions: listing a group's offsets without them is not safe everywhere
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        behind = [
            max(0, ends[tp] - meta.offset)
            for tp, meta in committed.items()
            if meta is not None and meta.offset >= 0 and tp in ends
        ]
        if behind:
            lags[group] = float(sum(behind))
    return lags


async def _partitions(admin: AIOKafkaAdminClient, prefix: str) -> list[TopicPartition]:
    # the admin's metadata: a consumer only keeps that of the topics it subscribed to
    described = await admin.describe_topics([t.full_name(prefix) for t in ALL_TOPICS])
    return [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        if not topic["error_code"]
        for p in sorted(topic["partitions"], key=lambda p: int(p["partition"]))
    ]


CONSUMER_GROUP_LAG = Gauge(
    "simfleet_consumer_group_lag",
    "Records between each partition's end offset and the group's committed offset, summed",
    ["group"],
)
LagSource = Callable[[], Awaitable[dict[str, float] | None]]


class LagMeter:
    """Measures ``group_lags`` at most once per ``ttl_s`` (a scrape, a page, an alert check may
    ask together) and keeps the ``simfleet_consumer_group_lag`` gauge to the last measurement."""

    def __init__(self, bootstrap: str, kafka: KafkaSettings, ttl_s: float = 5.0) -> None:
        self._bootstrap = bootstrap
        self._kafka = kafka
        self._ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._measured_at = -math.inf
        self._last: dict[str, float] | None = None

    async def lags(self) -> dict[str, float] | None:
        async with self._lock:
            if time.monotonic() - self._measured_at < self._ttl_s:
                return self._last
            try:
                async with asyncio.timeout(10.0):
                    measured = await group_lags(self._bootstrap, self._kafka)
            except TimeoutError:
                measured = None
            self._measured_at = time.monotonic()
            if measured is not None:
                for group in set(self._last or {}) - set(measured):
                    with contextlib.suppress(KeyError):
                        CONSUMER_GROUP_LAG.remove(group)
                for group, lag in measured.items():
                    CONSUMER_GROUP_LAG.labels(group).set(lag)
            self._last = measured
            return measured


_METERS: dict[tuple[str, str], LagMeter] = {}


def meter_for(bootstrap: str, kafka: KafkaSettings) -> LagMeter:
    """One meter per cluster and topic prefix in this process."""
    key = (bootstrap, kafka.topic_prefix)
    if key not in _METERS:
        _METERS[key] = LagMeter(bootstrap, kafka)
    return _METERS[key]

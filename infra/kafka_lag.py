"""Consumer lag as Kafka sees it: per consumer group of this deployment (its topic prefix), the
records between each partition's end and the group's committed offset, summed.

Measured from outside the consumers (the scheduler's alert check), so it covers every process.
A broker that cannot answer gives ``None`` ("not measured"), never a made-up zero.
"""

from __future__ import annotations

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from events.topics import ALL_TOPICS
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

log = structlog.get_logger("simfleet.kafka")


async def group_lags(bootstrap: str, kafka: KafkaSettings) -> dict[str, float] | None:
    prefix = kafka.topic_prefix
    secure = client_options(kafka)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="simfleet-lag", **secure)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="simfleet-lag", **secure
    )
    try:
        await admin.start()
        await consumer.start()
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)]
        await consumer.topics()  # metadata of every topic, for partitions_for_topic
        partitions = [
            TopicPartition(name, p)
            for name in (t.full_name(prefix) for t in ALL_TOPICS)
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
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
    except (KafkaError, OSError) as err:
        log.warning("consumer_lag_not_measured", error=repr(err))
        return None
    else:
        return lags
    finally:
        await consumer.stop()
        await admin.close()

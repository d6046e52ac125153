"""How far the verification reply consumer has read ``sms.inbound``, as the broker knows it.

A verification may only time out once every SMS the gateways pushed before its expiry has been
read by the ``verification-replies`` group: otherwise a consumer behind its topic (restarted,
rebalancing, slow) would fail a number whose reply is waiting in Kafka. The scheduler asks
``oldest_unread()`` before each expiry sweep: per partition, the first record after the group's
committed offset (its time is when the bridge published it), or nothing when the group has read
to the end. Measured from outside the consumers, so it holds whichever process consumes.
Reading the records themselves (not the broker's end offsets, which the embedded broker reports
wrongly) keeps the answer exact; a broker that cannot answer gives ``None``: no expiry that round.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from events.topics import SMS_INBOUND
from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

REPLIES_GROUP = "verification-replies"
log = structlog.get_logger("simfleet.verification")


@dataclass(frozen=True)
class Unread:
    """``since``: when the oldest record the group has not read was published; None: none."""

    since: datetime | None


class ReplyBacklog:
    def __init__(
        self, bootstrap: str, kafka: KafkaSettings, *, group: str = REPLIES_GROUP,
        wait_s: float = 15.0,
    ) -> None:  # fmt: skip
        self.bootstrap, self.wait_s = servers(bootstrap), wait_s
        self.secure = client_options(kafka)
        self.topic = SMS_INBOUND.full_name(kafka.topic_prefix)
        self.group = f"{kafka.topic_prefix}{group}"

    async def oldest_unread(self) -> Unread | None:
        """The group's oldest unread record; None when the broker could not tell."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id="simfleet-backlog", **self.secure
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, client_id="simfleet-backlog",
            enable_auto_commit=False, fetch_max_wait_ms=100,
            max_partition_fetch_bytes=64 * 1024, **self.secure,
        )  # fmt: skip
        try:
            await admin.start()
            await consumer.start()
            return await self._measure(admin, consumer)
        except (KafkaError, OSError, TimeoutError) as err:
            log.warning("reply_backlog_not_measured", error=repr(err))
            return None
        finally:
            await consumer.stop()
            await admin.close()

    async def _measure(
        self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer
    ) -> Unread | None:
        # the admin's metadata: a consumer only keeps that of the topics it subscribed to (Apache
        # Kafka answers a metadata request naming no topic with none)
        described = await admin.describe_topics([self.topic])
        partitions = [
            TopicPartition(self.topic, p["partition"])
            for topic in described
            if not topic["error_code"]
            for p in sorted(topic["partitions"], key=lambda p: int(p["partition"]))
        ]
        if not partitions:
            return None
        # name the partitions: listing a group's offsets without them is not safe everywhere
        committed = await admin.list_consumer_group_offsets(self.group, partitions=partitions)
        consumer.assign(partitions)
        for tp in partitions:
            meta = committed.get(tp)
            if meta is not None and meta.offset >= 0:
                consumer.seek(tp, meta.offset)
            else:  # the group never committed here: it starts from the beginning
                await consumer.seek_to_beginning(tp)
        oldest: list[int] = []
        pending = set(partitions)
        async with asyncio.timeout(self.wait_s):
            while pending:
                fetched = await consumer.getmany(*pending, timeout_ms=200)
                for tp, records in fetched.items():
                    if records:
                        oldest.append(records[0].timestamp)
                        pending.discard(tp)
                for tp in list(pending):
                    end = consumer.highwater(tp)
                    if end is not None and await consumer.position(tp) >= end:
                        pending.discard(tp)  # read to the end of the partition
        if not oldest:
            return Unread(None)
        return Unread(datetime.fromtimestamp(min(oldest) / 1000, UTC))

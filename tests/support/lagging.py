"""A consumer group left behind on a topic, as the lag meter reads it (end - committed)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def group_left_behind(
    bootstrap: str, topic: str, group: str, *, records: int, committed: int
) -> None:
    """``records`` more records on the topic's partition 0, and ``group``'s offset there
    committed at ``committed``, with no member left: ``records - committed`` behind on a
    fresh topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(records):
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): committed})
    finally:
        await consumer.stop()

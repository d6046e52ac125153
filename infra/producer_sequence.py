"""The idempotent producer's way out of a sequence gap: a new producer id.

An idempotent producer numbers its batches per partition, and the broker accepts only the next
number. aiokafka (0.14) takes the number of a batch before it knows it can send it: a batch
whose partition has no leader for ``request_timeout_ms`` (every broker of the cluster down) is
failed with its number spent. From then on the broker answers every batch for that partition
with OUT_OF_ORDER_SEQUENCE_NUMBER, and aiokafka never recovers by itself — a bridge that came
through a whole-cluster restart answered 503 to every push for good (found by
``tests/integration/test_kafka_cluster_chaos.py``). Kafka's own producer resets in that case:
it takes a new producer id, whose numbers start again at 0. ``restart_sequence`` does the same
to aiokafka's producer; its sender asks the broker for the new id before the next batch.

The records of the failed sends were not acknowledged (the caller answered 503 or will retry),
so nothing acknowledged is lost; a batch the broker had written after all comes again under
the new id, a duplicate the readers recognise by event id.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import OutOfOrderSequenceNumber, UnknownProducerId
from aiokafka.producer.transaction_manager import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, PidAndEpoch

log = structlog.get_logger("simfleet.kafka")

# what the broker answers once producer and broker disagree on the numbers
SEQUENCE_LOST = (OutOfOrderSequenceNumber, UnknownProducerId)
# the failures of one gap arrive together (every push in flight): one new id for all of them
COOLDOWN_S = 5.0


def restart_sequence(producer: AIOKafkaProducer, reason: str) -> bool:
    """Drops the producer id (and its sequence numbers) of an idempotent, non-transactional
    producer; returns whether it did (not within ``COOLDOWN_S`` of the last restart, nor while
    a new id is awaited)."""
    manager = getattr(producer, "_txn_manager", None)
    if manager is None or manager.transactional_id is not None or not manager.has_pid():
        return False
    last = getattr(producer, "_simfleet_sequence_restarted_at", None)
    now = time.monotonic()
    if last is not None and now - last < COOLDOWN_S:
        return False
    old = manager.producer_id
    manager._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    manager._pid_waiter = asyncio.get_running_loop().create_future()
    manager._sequence_numbers.clear()
    producer._simfleet_sequence_restarted_at = now
    log.warning("producer_sequence_restarted", old_producer_id=old, reason=reason)
    return True

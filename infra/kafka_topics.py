"""Topics as simfleet wants them: partitions, replication and per-topic configuration, created
when missing and (``simfleet topics ensure``) compared with what the broker has and repaired.

Replication factor ``min(3, brokers)`` unless ``KAFKA_REPLICATION_FACTOR`` says otherwise, and
``min.insync.replicas`` one less (at least 1): with acks=all an event is acknowledged once two
replicas of three hold it, and one broker may be down without refusing writes. Retention per topic
from settings. The reseller registry is kept whole (``retention.ms=-1``) rather than compacted:
its key is the reseller, so compaction would keep only each reseller's last event and drop its
``reseller.created`` and earlier endpoints, which every reader of the registry from the start needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import errors
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events.topics import RESELLER_REGISTRY, Topic, all_topics_with_dlqs
from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

KEPT_FOREVER = frozenset({RESELLER_REGISTRY.name})
ALREADY_EXISTS = errors.TopicAlreadyExistsError.errno


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


@dataclass(frozen=True)
class Drift:
    """One way a topic differs from its spec; ``repaired`` when ensure fixed it."""

    topic: str
    setting: str
    wanted: str
    found: str
    repaired: bool

    def __str__(self) -> str:
        outcome = "repaired" if self.repaired else "NOT repaired (needs a partition reassignment)"
        return f"{self.topic}: {self.setting} is {self.found}, wanted {self.wanted}: {outcome}"


@dataclass(frozen=True)
class TopicReport:
    created: list[str]
    drifts: list[Drift]


def replication_for(settings: KafkaSettings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) on a cluster of ``brokers`` brokers."""
    replication = settings.kafka_replication_factor or min(3, max(1, brokers))
    min_isr = settings.kafka_min_insync_replicas or max(1, replication - 1)
    return replication, min_isr


def retention_for(settings: KafkaSettings, topic: str) -> int:
    if topic in settings.kafka_retention_ms:
        return settings.kafka_retention_ms[topic]
    if topic in KEPT_FOREVER:
        return -1
    return settings.kafka_default_retention_ms


def specs(settings: KafkaSettings, brokers: int, topics: Iterable[Topic] | None) -> list[TopicSpec]:
    replication, min_isr = replication_for(settings, brokers)
    return [
        TopicSpec(
            t.full_name(settings.topic_prefix),
            settings.partitions_for(t.name, t.partitions),
            replication,
            {
                "cleanup.policy": "delete",
                "min.insync.replicas": str(min_isr),
                "retention.ms": str(retention_for(settings, t.name)),
            },
        )
        for t in (topics if topics is not None else all_topics_with_dlqs())
    ]


class TopicAdminError(RuntimeError):
    """The broker refused a topic operation (aiokafka returns these errors, it does not raise)."""


def raise_errors(doing: str, responses: Iterable[Any], *, tolerated: int | None = None) -> None:
    """Per-resource error codes of CreateTopics, Describe/AlterConfigs and CreatePartitions
    responses (``tolerated``: a code that is not an error here, such as "already exists")."""
    refused = []
    for response in responses:
        for name, code in _resource_codes(response):
            if code and code != tolerated:
                refused.append(f"{name}: {errors.for_code(code).__name__}")
    if refused:
        raise TopicAdminError(f"{doing} refused: " + "; ".join(refused))


def _resource_codes(response: Any) -> list[tuple[str, int]]:
    if hasattr(response, "resources"):  # (code, message, type, name, ...)
        return [(r[3], r[0]) for r in response.resources]
    # CreateTopics and CreatePartitions: one (name, code, message) per topic
    return [(t[0], t[1]) for t in getattr(response, "topic_errors", ())]


async def _broker_count(admin: AIOKafkaAdminClient) -> int:
    return len((await admin.describe_cluster())["brokers"])


async def create_missing(admin: AIOKafkaAdminClient, wanted: list[TopicSpec]) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [s for s in wanted if s.name not in existing]
    if missing:
        created = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication, topic_configs=s.configs)
                for s in missing
            ]
        )
        raise_errors("creating topics", [created], tolerated=ALREADY_EXISTS)
        await _until_led(admin, [s.name for s in missing])
    return [s.name for s in missing]


async def _until_led(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 15.0) -> None:
    """Kafka creates topics asynchronously: wait until every partition has a leader, so that what
    follows (producing, listing, altering configs) does not meet a topic that is not there yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        described = await admin.describe_topics(names)
        if all(
            not t["error_code"]
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.05)


def _admin(bootstrap: str, settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=servers(bootstrap), request_timeout_ms=15_000, **client_options(settings)
    )


async def ensure_topics(
    bootstrap: str, settings: KafkaSettings, topics: Iterable[Topic] | None = None
) -> list[str]:
    """Creates the missing topics with their partitions, replication and configs; returns the
    names it created (what exists is left alone: ``reconcile_topics`` compares and repairs)."""
    admin = _admin(bootstrap, settings)
    await admin.start()
    try:
        return await create_missing(admin, specs(settings, await _broker_count(admin), topics))
    finally:
        await admin.close()


async def reconcile_topics(
    bootstrap: str,
    settings: KafkaSettings,
    topics: Iterable[Topic] | None = None,
    *,
    repair: bool = True,
) -> TopicReport:
    """Creates what is missing, reports every drift from the spec and repairs what can be:
    topic configs (set back) and too few partitions (added; keys then map to other partitions
    for new records). Too many partitions or another replication factor are only reported."""
    admin = _admin(bootstrap, settings)
    await admin.start()
    try:
        wanted = specs(settings, await _broker_count(admin), topics)
        created = await create_missing(admin, wanted)
        present = [s for s in wanted if s.name not in created]
        drifts = await _drifts(admin, present)
        if repair:
            drifts = await _repair(admin, present, drifts)
        return TopicReport(created, drifts)
    finally:
        await admin.close()


async def _drifts(admin: AIOKafkaAdminClient, present: list[TopicSpec]) -> list[Drift]:
    if not present:
        return []
    by_name = {s.name: s for s in present}
    described = await admin.describe_topics([s.name for s in present])
    drifts: list[Drift] = []
    for topic in described:
        spec = by_name[topic["topic"]]
        partitions = topic["partitions"]
        if len(partitions) != spec.partitions:
            drifts.append(
                Drift(spec.name, "partitions", str(spec.partitions), str(len(partitions)), False)
            )
        replication = min((len(p["replicas"]) for p in partitions), default=0)
        if replication != spec.replication:
            drifts.append(
                Drift(spec.name, "replication", str(spec.replication), str(replication), False)
            )
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, s.name, dict.fromkeys(s.configs)) for s in present
    ]
    responses = await admin.describe_configs(resources)
    raise_errors("describing topic configs", responses)
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            spec = by_name[name]
            found = {entry[0]: entry[1] for entry in entries}
            drifts += [
                Drift(name, key, value, str(found.get(key)), False)
                for key, value in spec.configs.items()
                if found.get(key) != value
            ]
    return drifts


async def _repair(
    admin: AIOKafkaAdminClient, present: list[TopicSpec], drifts: list[Drift]
) -> list[Drift]:
    by_name = {s.name: s for s in present}
    config_drifted = sorted({d.topic for d in drifts if d.setting in by_name[d.topic].configs})
    if config_drifted:
        # AlterConfigs replaces a topic's whole dynamic configuration: send the full spec
        responses = await admin.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, by_name[name].configs)
                for name in config_drifted
            ]
        )
        raise_errors("altering topic configs", responses)
    grow = {
        d.topic: NewPartitions(by_name[d.topic].partitions)
        for d in drifts
        if d.setting == "partitions" and int(d.found) < by_name[d.topic].partitions
    }
    if grow:
        raise_errors("adding partitions", [await admin.create_partitions(grow)])
    repaired = set(config_drifted)
    return [
        Drift(
            d.topic,
            d.setting,
            d.wanted,
            d.found,
            (d.topic in repaired and d.setting in by_name[d.topic].configs)
            or (d.setting == "partitions" and d.topic in grow),
        )
        for d in drifts
    ]

"""The nodes of the embedded Apache Kafka: which JVMs run (one combined broker and controller,
or three brokers and a controller-only node), on which free loopback ports, and each one's
``server.properties``; their log directories formatted once, with one cluster id.

Settings chosen for a broker that starts in seconds and fails over quickly on a small machine
(``BROKER_TUNING``; each says why).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.embedded.kafka_jars import java_command
from infra.embedded.service import EmbeddedInfraError, free_port

CONTROLLER_ID = 100

# Test/development tuning: every value trades durability or throughput at scale for start-up
# time and quick failover on one small machine. Production brokers keep Kafka's defaults.
BROKER_TUNING: dict[str, str] = {
    # a new consumer group starts at once instead of waiting 3 s for more members
    "group.initial.rebalance.delay.ms": "0",
    # tests run consumers with 2 s session time-outs so a killed member's partitions move fast
    "group.min.session.timeout.ms": "1000",
    # internal topics: 50 partitions each would be created (and led) on the first group/producer
    "offsets.topic.num.partitions": "6",
    "transaction.state.log.num.partitions": "6",
    "share.coordinator.state.topic.num.partitions": "3",
    # a killed broker is fenced (and its leaderships moved) after 3 s, not 9 s
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    # a follower that stopped fetching leaves the ISR after 5 s, not 30 s
    "replica.lag.time.max.ms": "5000",
    # thread pools and buffers sized for 2 cores and a few hundred MB of heap
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.replica.fetchers": "1",
    "background.threads": "4",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    # tests create thousands of small partitions: 1 MB index files instead of 10 MB mappings
    "log.index.size.max.bytes": str(1024 * 1024),
    "log.segment.bytes": str(64 * 1024 * 1024),
    # topics are created explicitly with their partitions, replication and configs
    "auto.create.topics.enable": "false",
}


@dataclass(frozen=True)
class ExtraListener:
    """A second client listener on each broker, on its own free 127.0.0.1 port."""

    name: str  # the listener's name in the broker config, e.g. "SECURE"
    protocol: str  # its security protocol: SSL, SASL_PLAINTEXT or SASL_SSL
    # broker properties it needs (``listener.name.<name>.…`` keys, ``ssl.keystore.*``, …)
    config: Mapping[str, str] = field(default_factory=dict)
    # added to ``kafka-storage format``, e.g. ("--add-scram", "SCRAM-SHA-512=[name=…,password=…]")
    format_args: tuple[str, ...] = ()


@dataclass
class KafkaNode:
    """One JVM: a broker (``node_id`` 1..n), or the controller of a cluster."""

    node_id: int
    roles: str
    directory: Path
    broker_port: int | None
    controller_port: int | None
    extra_port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    @property
    def properties(self) -> Path:
        return self.directory / "server.properties"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def plan_nodes(directory: Path, brokers: int, extra: ExtraListener | None) -> list[KafkaNode]:
    """The nodes of a cluster of ``brokers`` (1: one combined node), each on free ports."""
    if brokers == 1:
        nodes = [KafkaNode(1, "broker,controller", directory / "node-1", free_port(), free_port())]
    else:
        nodes = [
            KafkaNode(CONTROLLER_ID, "controller", directory / "controller", None, free_port())
        ]
        nodes += [
            KafkaNode(i, "broker", directory / f"node-{i}", free_port(), None)
            for i in range(1, brokers + 1)
        ]
    if extra is not None:
        for node in nodes:
            if node.broker_port is not None:
                node.extra_port = free_port()
    return nodes


def write_properties(nodes: list[KafkaNode], replication: int, extra: ExtraListener | None) -> None:
    """Each node's ``server.properties`` (and its directory)."""
    voters = ",".join(
        f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes if n.controller_port
    )
    for node in nodes:
        node.directory.mkdir(parents=True, exist_ok=True)
        config = node_properties(node, voters, replication, extra)
        node.properties.write_text("".join(f"{k}={v}\n" for k, v in config.items()))


def node_properties(
    node: KafkaNode, voters: str, replication: int, extra: ExtraListener | None
) -> dict[str, str]:
    rf = str(replication)
    min_isr = str(max(1, replication - 1))
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if extra is not None:
        protocols += f",{extra.name}:{extra.protocol}"
    extra_address = (
        f"{extra.name}://127.0.0.1:{node.extra_port}" if extra and node.extra_port else ""
    )
    config = {
        "process.roles": node.roles,
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(listeners(node, extra_address)),
        "listener.security.protocol.map": protocols,
        "log.dirs": str(node.directory / "data"),
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        **BROKER_TUNING,
    }
    if node.broker_port:
        advertised = [f"PLAINTEXT://127.0.0.1:{node.broker_port}", extra_address]
        config["advertised.listeners"] = ",".join(a for a in advertised if a)
        config["inter.broker.listener.name"] = "PLAINTEXT"
    if extra_address and extra is not None:
        config.update(extra.config)
    return config


def listeners(node: KafkaNode, extra_address: str) -> list[str]:
    found = []
    if node.broker_port:
        found.append(f"PLAINTEXT://127.0.0.1:{node.broker_port}")
    if node.controller_port:
        found.append(f"CONTROLLER://127.0.0.1:{node.controller_port}")
    if extra_address:
        found.append(extra_address)
    return found


def format_storage(
    directory: Path,
    nodes: list[KafkaNode],
    java: str,
    extra: ExtraListener | None,
    timeout: float,
) -> None:
    """Formats the log directories not formatted yet (a restart keeps its data), side by side."""
    cluster_file = directory / "cluster.id"
    if not cluster_file.exists():
        cluster_file.write_text(new_cluster_id())
    cluster_id = cluster_file.read_text().strip()
    pending = []
    for node in nodes:
        if (node.directory / "data" / "meta.properties").exists():
            continue
        cmd = java_command(java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}")
        cmd += ["-c", str(node.properties), "--ignore-formatted"]
        if extra is not None:
            cmd += extra.format_args
        pending.append(
            (node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        )
    for node, proc in pending:
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise EmbeddedInfraError(
                f"formatting {node.directory} for Kafka failed:\n{out.decode(errors='replace')[-2000:]}"
            )


def new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding; like Kafka's
    own ``Uuid.randomUuid`` never starting with ``-``, which a command line reads as an option
    (one id in 64 did: ``kafka-storage format`` then failed with "expected one argument")."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text

"""The embedded Apache Kafka: the pinned broker of ``infra/embedded/kafka-broker/pom.xml`` in KRaft mode on
127.0.0.1 free ports, one node or a cluster of three brokers.

The jars come from Maven Central once (``make kafka-jars``: ``mvn dependency:copy-dependencies``
into ``.simfleet/apache-kafka/<version>/lib``) and run on the machine's Java 17+. One node is a
combined broker and controller; the cluster is three brokers and one controller-only node, so that
the brokers can be killed in any number while the controller still shrinks the in-sync replica sets
(with two of three brokers down a producer gets NOT_ENOUGH_REPLICAS at once, not a time-out).

The jars and Java are found by ``kafka_jars``; the nodes, their ports and ``server.properties``
(with the tuning for a small machine) are planned by ``kafka_nodes``. Data lives in
``<state_dir>/apache-kafka/node-N``: a node is formatted once, and started again on its log
directory it recovers its log like any Kafka.

Each JVM runs in its own session with ``PR_SET_PDEATHSIG``: when the process that started it dies
without stopping it (even by SIGKILL), the kernel SIGKILLs the broker, so none outlives simfleet.
SIGKILL, not SIGTERM: all nodes would get it at once, and a broker's controlled shutdown waits
for a controller that is already gone, forever; Kafka recovers its log on the next start.

``extra_listener`` (default none) adds a second client listener to every broker, for example
``SASL_SSL`` with its certificates and SCRAM users, so that clients' security settings can be
proven against a real broker; the PLAINTEXT listener stays for inter-broker traffic and the
readiness probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from infra.embedded.kafka_jars import MISSING_TOOLS, available, jars_dir, java_command, java_path
from infra.embedded.kafka_nodes import (
    CONTROLLER_ID,
    ExtraListener,
    KafkaNode,
    format_storage,
    plan_nodes,
    write_properties,
)
from infra.embedded.service import (
    EmbeddedInfraError,
    RunningService,
    forget_state,
    log_tail,
    port_answers,
    reusable,
    run_coro,
    write_state,
)

READY_TIMEOUT_S = 90.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel signals it when its parent exits.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class KafkaCluster:
    """Apache Kafka on loopback: ``brokers`` = 1 (combined node) or 3 (plus a controller)."""

    def __init__(
        self, state_dir: Path, brokers: int = 1, *, extra_listener: ExtraListener | None = None
    ) -> None:
        if brokers not in (1, 3):
            raise ValueError("the embedded Apache Kafka runs 1 or 3 brokers")
        self.brokers = brokers
        self.extra_listener = extra_listener
        self.directory = state_dir / "apache-kafka" / ("cluster" if brokers == 3 else "single")
        self.nodes: list[KafkaNode] = []

    @property
    def replication(self) -> int:
        return min(3, self.brokers)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.broker_port}" for n in self.broker_nodes)

    @property
    def extra_bootstrap(self) -> str:
        """The brokers' ``extra_listener`` addresses."""
        return ",".join(f"127.0.0.1:{n.extra_port}" for n in self.broker_nodes if n.extra_port)

    @property
    def broker_nodes(self) -> list[KafkaNode]:
        return [n for n in self.nodes if n.broker_port is not None]

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        java = java_path()
        if java is None or not available():
            raise EmbeddedInfraError(
                f"no Apache Kafka here (java: {java or 'missing'}, jars: {jars_dir()}): "
                + MISSING_TOOLS
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.nodes = plan_nodes(self.directory, self.brokers, self.extra_listener)
        write_properties(self.nodes, self.replication, self.extra_listener)
        format_storage(self.directory, self.nodes, java, self.extra_listener, READY_TIMEOUT_S)
        for node in self.nodes:
            self._launch(java, node)
        try:
            self.wait_ready()
        except BaseException:
            self.stop(5.0)
            raise

    def _launch(self, java: str, node: KafkaNode) -> None:
        cmd = java_command(java, "kafka.Kafka", str(node.properties))
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (only prctl, no locks taken)
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until every running broker is registered and unfenced (answers the cluster metadata)."""
        deadline = time.monotonic() + timeout
        wanted = {n.node_id for n in self.broker_nodes if n.running}
        while time.monotonic() < deadline:
            for node in self.nodes:
                if (
                    node.proc is not None
                    and node.proc.poll() is not None
                    and node.node_id in wanted | {CONTROLLER_ID}
                ):
                    raise EmbeddedInfraError(
                        f"Kafka node {node.node_id} exited with {node.proc.returncode}; "
                        f"tail of {node.log_path}:\n{log_tail(node.log_path)}"
                    )
            ports = [n.broker_port for n in self.broker_nodes if n.node_id in wanted]
            with contextlib.suppress(Exception):
                if (
                    all(port_answers(p, 0.2) for p in ports if p)
                    and run_coro(
                        lambda: asyncio.wait_for(_registered(self.bootstrap_of(wanted)), 5.0)
                    )
                    >= wanted
                ):
                    return
            time.sleep(0.2)
        tails = "\n".join(f"-- {n.log_path}:\n{log_tail(n.log_path, 15)}" for n in self.nodes)
        raise EmbeddedInfraError(
            f"Apache Kafka did not answer within {timeout:.0f} s "
            f"(set EMBEDDED_BROKER=tansu or KAFKA_BOOTSTRAP_SERVERS=host:port):\n{tails}"
        )

    def bootstrap_of(self, node_ids: set[int]) -> str:
        return ",".join(
            f"127.0.0.1:{n.broker_port}" for n in self.broker_nodes if n.node_id in node_ids
        )

    # -- faults and stop ----------------------------------------------------------------------

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, its log as a crash leaves it."""
        node = self.node(node_id)
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()

    def restart(self, node_id: int, *, wait: bool = True) -> None:
        """Starts a stopped or killed node again on its data."""
        java = java_path()
        if java is None:
            raise EmbeddedInfraError(MISSING_TOOLS)
        node = self.node(node_id)
        if node.running:
            return
        self._launch(java, node)
        if wait:
            self.wait_ready()

    def stop_node(self, node: KafkaNode, timeout: float) -> None:
        proc = node.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """Brokers first (their controlled shutdown needs the controller), then the controller."""
        brokers = [n for n in self.broker_nodes if n.running]
        for node in brokers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        for node in brokers:
            self.stop_node(node, timeout)
        for node in self.nodes:
            self.stop_node(node, timeout)


async def _registered(bootstrap: str) -> set[int]:
    from aiokafka.admin import AIOKafkaAdminClient  # lazily: keeps importing this module cheap

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        return {int(b["node_id"]) for b in cluster["brokers"]}
    finally:
        await admin.close()


def start_kafka(state_dir: Path, *, brokers: int = 1, reuse: bool = False) -> RunningService:
    """Start Apache Kafka (or reuse the one recorded in ``state_dir``); stop it with ``.stop()``."""
    cluster = KafkaCluster(state_dir, brokers)
    state_file = cluster.directory / "instance.json"
    if reuse and (existing := reusable(state_file, "kafka")):
        return existing
    cluster.start()
    # the state file names the first broker: a reusing process checks that pid and port
    pid = cluster.broker_nodes[0].proc.pid if cluster.broker_nodes[0].proc else 0
    write_state(state_file, pid, cluster.bootstrap)

    def stop(timeout: float) -> None:
        cluster.stop(timeout)
        forget_state(state_file, pid)

    return RunningService("kafka", cluster.bootstrap, pid, owned=True, stopper=stop)


@contextlib.contextmanager
def embedded_kafka_cluster(state_dir: Path, brokers: int = 1) -> Iterator[KafkaCluster]:
    """A cluster the caller can also fault (kill, restart nodes); stopped when the block ends."""
    cluster = KafkaCluster(state_dir, brokers)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()

"""The embedded Apache Kafka: the pinned broker of ``infra/embedded/kafka-broker/pom.xml`` in KRaft mode on
127.0.0.1 free ports, one node or a cluster of three brokers.

The jars come from Maven Central once (``make kafka-jars``: ``mvn dependency:copy-dependencies``
into ``.simfleet/apache-kafka/<version>/lib``) and run on the machine's Java 17+. One node is a
combined broker and controller; the cluster is three brokers and one controller-only node, so that
the brokers can be killed in any number while the controller still shrinks the in-sync replica sets
(with two of three brokers down a producer gets NOT_ENOUGH_REPLICAS at once, not a time-out).

Settings chosen for a broker that starts in seconds and fails over quickly on a small machine
(``BROKER_TUNING``; each says why). Data lives in ``<state_dir>/apache-kafka/node-N``: a node is
formatted once, and started again on its log directory it recovers its log like any Kafka.

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
import base64
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.embedded.service import (
    EmbeddedInfraError,
    RunningService,
    forget_state,
    free_port,
    log_tail,
    port_answers,
    reusable,
    run_coro,
    write_state,
)

ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).resolve().parent / "kafka-broker" / "pom.xml"
LOG_CONFIG = POM.with_name("log4j2.properties")
READY_TIMEOUT_S = 90.0
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
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx512m",
    # one GC thread set instead of G1's per-core pools: four JVMs share two cores
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    f"-Dlog4j2.configurationFile={LOG_CONFIG}",
)
_PR_SET_PDEATHSIG = 1


def kafka_version() -> str:
    """The broker version pinned in the pom (``kafka.version``)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise EmbeddedInfraError(f"no <kafka.version> in {POM}")
    return match.group(1).strip()


def jars_dir() -> Path:
    """Where ``make kafka-jars`` puts the broker's classpath (``KAFKA_JARS_DIR`` overrides)."""
    if configured := os.environ.get("KAFKA_JARS_DIR"):
        return Path(configured)
    return ROOT / ".simfleet" / "apache-kafka" / kafka_version() / "lib"


def java_path() -> str | None:
    if home := os.environ.get("JAVA_HOME"):
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java")


def available() -> bool:
    """True when Java and the broker jars are here (the embedded broker can be Apache Kafka)."""
    lib = jars_dir()
    return java_path() is not None and any(lib.glob("kafka_2.13-*.jar"))


def fetch_jars() -> Path:
    """Copies the pinned broker and its runtime dependencies from Maven Central (once)."""
    lib = jars_dir()
    if any(lib.glob("kafka_2.13-*.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EmbeddedInfraError(MISSING_TOOLS)
    partial = lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    cmd += ["-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EmbeddedInfraError(
            f"Maven could not fetch Apache Kafka {kafka_version()} ({' '.join(cmd)}):\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )
    partial.replace(lib)
    return lib


MISSING_TOOLS = (
    "Apache Kafka needs Java 17+ and Maven: as root run "
    "'apt-get install -y openjdk-17-jre-headless maven' (Debian), then 'make kafka-jars'; "
    "or set EMBEDDED_BROKER=tansu, or KAFKA_BOOTSTRAP_SERVERS=host:port"
)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel signals it when its parent exits.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding; like Kafka's
    own ``Uuid.randomUuid`` never starting with ``-``, which a command line reads as an option
    (one id in 64 did: ``kafka-storage format`` then failed with "expected one argument")."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


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
        self.nodes = self._plan()
        self._write_configs()
        self._format(java)
        for node in self.nodes:
            self._launch(java, node)
        try:
            self.wait_ready()
        except BaseException:
            self.stop(5.0)
            raise

    def _plan(self) -> list[KafkaNode]:
        nodes = self._plan_ports()
        if self.extra_listener is not None:
            for node in nodes:
                if node.broker_port is not None:
                    node.extra_port = free_port()
        return nodes

    def _plan_ports(self) -> list[KafkaNode]:
        if self.brokers == 1:
            return [
                KafkaNode(
                    1, "broker,controller", self.directory / "node-1", free_port(), free_port()
                )
            ]
        nodes = [
            KafkaNode(CONTROLLER_ID, "controller", self.directory / "controller", None, free_port())
        ]
        nodes += [
            KafkaNode(i, "broker", self.directory / f"node-{i}", free_port(), None)
            for i in range(1, self.brokers + 1)
        ]
        return nodes

    def _voters(self) -> str:
        return ",".join(
            f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes if n.controller_port
        )

    def _write_configs(self) -> None:
        rf = str(self.replication)
        min_isr = str(max(1, self.replication - 1))
        extra = self.extra_listener
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if extra is not None:
            protocols += f",{extra.name}:{extra.protocol}"
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            listeners = []
            if node.broker_port:
                listeners.append(f"PLAINTEXT://127.0.0.1:{node.broker_port}")
            if node.controller_port:
                listeners.append(f"CONTROLLER://127.0.0.1:{node.controller_port}")
            extra_address = (
                f"{extra.name}://127.0.0.1:{node.extra_port}" if extra and node.extra_port else ""
            )
            if extra_address:
                listeners.append(extra_address)
            config = {
                "process.roles": node.roles,
                "node.id": str(node.node_id),
                "controller.quorum.voters": self._voters(),
                "controller.listener.names": "CONTROLLER",
                "listeners": ",".join(listeners),
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
            node.properties.write_text("".join(f"{k}={v}\n" for k, v in config.items()))

    def _format(self, java: str) -> None:
        """Formats the log directories not formatted yet (a restart keeps its data)."""
        cluster_file = self.directory / "cluster.id"
        if not cluster_file.exists():
            cluster_file.write_text(_cluster_id())
        cluster_id = cluster_file.read_text().strip()
        pending = []
        for node in self.nodes:
            if (node.directory / "data" / "meta.properties").exists():
                continue
            cmd = [java, *JVM_OPTIONS, "-cp", f"{jars_dir()}/*", "kafka.tools.StorageTool"]
            cmd += ["format", f"--cluster-id={cluster_id}", "-c", str(node.properties)]
            cmd += ["--ignore-formatted"]
            if self.extra_listener is not None:
                cmd += self.extra_listener.format_args
            pending.append(
                (node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            )
        for node, proc in pending:
            out, _ = proc.communicate(timeout=READY_TIMEOUT_S)
            if proc.returncode != 0:
                raise EmbeddedInfraError(
                    f"formatting {node.directory} for Kafka failed:\n{out.decode(errors='replace')[-2000:]}"
                )

    def _launch(self, java: str, node: KafkaNode) -> None:
        cmd = [java, *JVM_OPTIONS, "-cp", f"{jars_dir()}/*", "kafka.Kafka", str(node.properties)]
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

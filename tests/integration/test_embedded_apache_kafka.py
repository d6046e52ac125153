"""The embedded Apache Kafka starts from its jars, keeps its log across a crash, leaves no process
behind (not even when the process that started it is SIGKILLed), and says what is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.embedded import broker as embedded_broker
from infra.embedded import kafka_jars
from infra.embedded.apache_kafka import KafkaCluster, start_kafka
from infra.embedded.service import EmbeddedInfraError, pid_alive

pytestmark = pytest.mark.integration

TEST_TMP = Path(__file__).resolve().parents[2] / ".simfleet" / "test-tmp"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    TEST_TMP.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="apache-kafka-", dir=TEST_TMP))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _wait_dead(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pid_alive(pid)


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"sim-1")
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(seen) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            seen += [r.value or b"" for records in batch.values() for r in records]
        return seen
    finally:
        await consumer.stop()


async def test_single_node_serves_an_idempotent_producer_and_recovers_its_log_after_sigkill(
    state_dir: Path,
) -> None:
    cluster = KafkaCluster(state_dir, brokers=1)
    cluster.start()
    try:
        topic = f"embedded-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 2, 1)])
        finally:
            await admin.close()
        await _produce(cluster.bootstrap, topic, [b"one", b"two"])

        cluster.kill(1)  # no controlled shutdown: the restart must recover the log
        cluster.restart(1)
        await _produce(cluster.bootstrap, topic, [b"three"])
        assert sorted(await _read_all(cluster.bootstrap, topic, 3)) == [b"one", b"three", b"two"]
        pids = [n.proc.pid for n in cluster.nodes if n.proc]
    finally:
        cluster.stop()
    assert all(_wait_dead(pid) for pid in pids)


async def test_three_brokers_and_a_controller_on_loopback(state_dir: Path) -> None:
    cluster = KafkaCluster(state_dir, brokers=3)
    cluster.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_cluster()
            topic = f"replicated-{uuid.uuid4().hex[:8]}"
            await admin.create_topics([NewTopic(topic, 3, 3)])
        finally:
            await admin.close()
        assert {b["node_id"] for b in described["brokers"]} == {1, 2, 3}
        assert all(b["host"] == "127.0.0.1" for b in described["brokers"])
        await _produce(cluster.bootstrap, topic, [b"replicated"])
        pids = [n.proc.pid for n in cluster.nodes if n.proc]
        assert len(pids) == 4
    finally:
        cluster.stop()
    assert all(_wait_dead(pid) for pid in pids)


def test_the_broker_dies_with_the_process_that_started_it(state_dir: Path) -> None:
    """SIGKILL leaves no chance to clean up: the kernel's parent-death signal stops the JVM."""
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from infra.embedded.apache_kafka import start_kafka\n"
        "service = start_kafka(Path(sys.argv[1]))\n"
        "print(json.dumps({'pid': service.pid}), flush=True)\n"
        "time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parents[2]
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(state_dir)], stdout=subprocess.PIPE, cwd=root
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        broker_pid = int(json.loads(line)["pid"])
        assert pid_alive(broker_pid)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert _wait_dead(broker_pid), "the broker outlived the process that started it"


def test_reuse_attaches_to_a_running_broker_without_owning_it(state_dir: Path) -> None:
    first = start_kafka(state_dir)
    try:
        second = start_kafka(state_dir, reuse=True)
        assert (second.url, second.pid, second.owned) == (first.url, first.pid, False)
        second.stop()
        assert first.pid is not None
        assert pid_alive(first.pid)
    finally:
        first.stop()


def test_missing_jars_say_what_to_install(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_JARS_DIR", str(state_dir / "no-jars"))
    assert not kafka_jars.available()
    assert embedded_broker.chosen("auto") == "tansu"
    assert embedded_broker.chosen("tansu") == "tansu"
    with pytest.raises(
        EmbeddedInfraError, match="apt-get install -y openjdk-17-jre-headless maven"
    ):
        embedded_broker.chosen("kafka")
    with pytest.raises(EmbeddedInfraError, match="make kafka-jars"):
        KafkaCluster(state_dir).start()


def test_auto_prefers_apache_kafka_where_its_jars_are() -> None:
    assert kafka_jars.available(), "make kafka-jars should have fetched the broker"
    assert embedded_broker.chosen("auto") == "kafka"
    assert os.environ.get("EMBEDDED_BROKER", "auto") in ("auto", "kafka")

"""``make chaos`` on the three-broker Apache Kafka (replication factor 3, min.insync.replicas 2, a
controller of its own): simfleet as OS processes, as an operator runs them, while the cluster, the
consumer group's members, Postgres and the carrier-calling workers are broken under load.

- The whole cluster stopped and started on its data, twice, while gateways push: every node
  SIGKILLed at once, then every node stopped with SIGTERM (controlled shutdown); each time all of
  them are started again on their log directories (Kafka's log recovery). The bridge answers 503
  with Retry-After meanwhile; every SMS it acknowledged is on ``sms.inbound`` read from offset 0,
  in ``inbound_sms`` exactly once, and reaches the reseller, a repeat only under its own
  webhook-id.
- Three ``simfleet workers webhooks`` processes in one consumer group while gateways push:
  members SIGKILLed, new ones added (rebalances each time), and Postgres stopped and started
  again in the middle of it; the same promises.
- ``simfleet workers provisioning`` and ``simfleet workers rotation`` SIGKILLed again and again
  while SIMs are activated and then rotated against a slow carrier served by a process of its
  own (Helix and the Skyline gateways around one world), so that every process talks to the same
  carrier: the carrier's own record shows each SIM activated once and each number changed once
  for the day, although each SIM's daily rotation was requested three times (the same request
  twice and a retry of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from events.sim import MdnChangeRequested, SimActivationRequested
from events.topics import SIM_LIFECYCLE, SMS_INBOUND
from infra.bus import Bus
from infra.clock import SystemClock
from infra.embedded.apache_kafka import KafkaCluster
from infra.http import free_port, serve_http
from infra.kafka import build_broker, ensure_topics
from infra.postgres import create_pool, migrate
from infra.settings import Settings, WebhookSettings
from infra.webhook_signing import SecretBox
from policies.rotation import retry_ref
from producers.reseller_commands import ResellerCommands
from producers.skyline.bridge import RETRY_AFTER_S
from sandbox.helix_world import make_iccid, make_imei
from sandbox.reseller import ReceiverState, create_reseller_receiver
from tests.conftest import ROOT, STATE_DIR, isolated_settings
from tests.support.carrier_process import carrier_process
from tests.support.chaos_world import dead_letters, environment, reseller_fleet, webhook_ids
from tests.support.eventually import eventually
from tests.support.gateway_load import (
    Answer,
    Gateways,
    acknowledged_ids,
    stored,
    to_number,
    topic_events,
)
from tests.support.kafka_cluster import all_up, kill_all, stop_all, three_brokers
from tests.support.processes import SimfleetProcess
from tests.support.restartable_postgres import restartable_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "gw-secret-for-cluster-chaos"
GATEWAYS = 8
ROWS = 10  # SMS per push
STEP = 1_500  # SMS acknowledged between two faults
MEMBERS_STEP = 500  # SMS acknowledged between two changes of the webhook group
# a process starting on a machine this busy (four JVMs, Postgres, five simfleet processes)
START_TIMEOUT_S = 300.0
# each test's process logs, kept after the run (pytest's own temporary directories rotate)
LOGS = ROOT / ".simfleet" / "chaos-logs"
CLIENT_ID, USERNAME, PASSWORD = "chaos-client", "chaos@simfleet.example", "chaos-grant-pass"


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    # under the session's state directory: pytest's temporary directories are shared by every
    # session on the machine and the oldest are removed, a cluster's log directories included
    with three_brokers(STATE_DIR / "kafka-chaos") as three:
        yield three


@pytest.fixture
def logs(request: pytest.FixtureRequest) -> Path:
    directory: Path = LOGS / str(request.node.name)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def up(cluster: KafkaCluster) -> KafkaCluster:
    return all_up(cluster)


@dataclass
class Run:
    """One test's simfleet: its settings, the processes it started, the reseller's receiver."""

    settings: Settings
    bootstrap: str
    env: dict[str, str]
    logs: Path
    pool: asyncpg.Pool
    bus: Bus
    receiver: ReceiverState
    bridge_url: str
    processes: list[SimfleetProcess] = field(default_factory=list)

    def process(self, *args: str) -> SimfleetProcess:
        n = len(self.processes)
        log = self.logs / f"{n:02d}-{'-'.join(args)}.log"
        started = SimfleetProcess(list(args), self.env, log, START_TIMEOUT_S)
        self.processes.append(started)
        return started

    def topic(self, name: str) -> str:
        return f"{self.settings.kafka.topic_prefix}{name}"

    def dead(self, victims: list[SimfleetProcess]) -> list[str]:
        """The processes that ended although the test never killed them."""
        return [p.name for p in self.processes if p not in victims and p.starts and not p.alive]


@contextlib.asynccontextmanager
async def simfleet_run(
    cluster: KafkaCluster,
    database_url: str,
    topic_prefix: str,
    logs: Path,
    carrier: dict[str, str] | None = None,
    bridge_port: int | None = None,
) -> AsyncIterator[Run]:
    """The topics on the cluster, a reseller whose endpoint is this test's receiver with one SIM
    per gateway, and the environment for simfleet processes; processes stopped at the end."""
    settings = isolated_settings(cluster.bootstrap, database_url, topic_prefix)
    await ensure_topics(cluster.bootstrap, settings.kafka)
    sealing_key = Fernet.generate_key().decode()
    bridge_port = bridge_port or free_port()
    env = environment(
        state_dir=settings.state_dir,
        bootstrap=cluster.bootstrap,
        database_url=database_url,
        topic_prefix=topic_prefix,
        gateway_secret=SECRET,
        sealing_key=sealing_key,
        bridge_port=bridge_port,
        # Kafka's own group time-outs: a member of a busy machine is not evicted again and again
        KAFKA_SESSION_TIMEOUT_MS="10000",
        KAFKA_HEARTBEAT_INTERVAL_MS="2000",
        **(carrier or {}),
    )
    receiver_app, receiver = create_reseller_receiver()
    pool = await create_pool(database_url, min_size=1, max_size=4)
    broker = build_broker(settings.kafka, cluster.bootstrap)
    await broker.start()
    bus = Bus(broker, topic_prefix)
    run = Run(
        settings,
        cluster.bootstrap,
        env,
        logs,
        pool,
        bus,
        receiver,
        f"http://127.0.0.1:{bridge_port}",
    )
    try:
        async with serve_http(receiver_app) as receiver_url:
            projector = run.process("projector")
            await projector.start()
            commands = ResellerCommands(
                bus=bus,
                pool=pool,
                box=SecretBox([sealing_key.encode()]),
                settings=WebhookSettings(allow_http=True, allow_private=True),
                clock=SystemClock(),
            )
            numbers = {make_iccid(9000 + g): to_number(g) for g in range(GATEWAYS)}
            await reseller_fleet(pool, commands, receiver, receiver_url, numbers)
            yield run
    finally:
        for process in reversed(run.processes):
            await process.stop()
        await broker.stop()
        await pool.close()


async def webhooks_for(receiver: ReceiverState, ids: set[str], within: float) -> None:
    """Until the receiver has every one of ``ids`` (or ``within`` passed; the caller asserts)."""
    with contextlib.suppress(AssertionError):
        await eventually(
            lambda: asyncio.sleep(0, set(webhook_ids(receiver, "ep1"))),
            until=lambda got: ids <= got,
            within=within,
            interval=0.5,
        )


def assert_nothing_lost_nothing_twice(
    ids: set[str], rows: list[str], receiver: ReceiverState, dlq: int
) -> dict[str, set[str | None]]:
    missing = ids - set(rows)
    assert not missing, f"{len(missing)} acknowledged SMS not in inbound_sms"
    assert len(rows) == len(set(rows)) == len(ids), "an SMS stored twice (or one never pushed)"
    got = webhook_ids(receiver, "ep1")
    undelivered = ids - set(got)
    assert not undelivered, f"{len(undelivered)} acknowledged SMS without a webhook"
    assert set(got) == ids
    # at least once: a repeat only ever under the message's own webhook-id (never another one)
    assert all(hooks == {message_id} for message_id, hooks in got.items())
    assert all(d.signature_valid for d in receiver.received("ep1") if d.accepted)
    assert dlq == 0, "records were dead-lettered"
    return got


async def acknowledged(gateways: Gateways, since: float, at_least: int) -> None:
    """Until the bridge acknowledged ``at_least`` SMS pushed since ``since``."""
    await gateways.until(lambda: gateways.acknowledged(since) >= at_least, within=600)


async def refusals(gateways: Gateways, since: float, at_least: int) -> None:
    await gateways.until(lambda: len(gateways.refused(since)) >= at_least, within=180)


def outage_answers(answers: list[Answer], down: float, back: float) -> list[Answer]:
    """The pushes sent after the cluster went down and answered before it was back."""
    return [a for a in answers if a.sent_at >= down and a.answered_at < back]


@pytest.mark.timeout(1800)
async def test_the_whole_cluster_stopped_and_started_on_its_data_under_traffic_loses_nothing(
    up: KafkaCluster, database_url: str, topic_prefix: str, logs: Path
) -> None:
    cluster = up
    outages: list[tuple[str, float, float, float]] = []  # how, down, started, serving again
    async with (
        simfleet_run(cluster, database_url, topic_prefix, logs) as run,
        httpx.AsyncClient(timeout=120) as http,
    ):
        await asyncio.gather(
            run.process("workers", "webhooks").start(), run.process("bridge").start()
        )
        gateways = Gateways(http, run.bridge_url, SECRET, GATEWAYS, ROWS)
        gateways.start()
        since = 0.0
        faults: tuple[tuple[str, Callable[[KafkaCluster], None]], ...] = (
            ("SIGKILL", kill_all),
            ("SIGTERM", stop_all),
        )
        for how, take_down in faults:
            await acknowledged(gateways, since, STEP)
            await asyncio.to_thread(take_down, cluster)
            # every node gone: a SIGTERM's controlled shutdown still acknowledges pushes (200)
            # until the brokers exit, and those are checked as stored like any other
            down = time.monotonic()
            await refusals(gateways, down, GATEWAYS)
            started = time.monotonic()
            await asyncio.to_thread(all_up, cluster)
            since = time.monotonic()
            await acknowledged(gateways, since, 1)
            outages.append((how, down, started, time.monotonic()))
        await acknowledged(gateways, since, STEP)
        await gateways.stop()
        retried = await gateways.retry_refused(within=120)
        ids = acknowledged_ids(gateways.answers + retried)
        rows = await stored(
            run.pool, ids, within=600, bootstrap=run.bootstrap, settings=run.settings
        )
        await webhooks_for(run.receiver, ids, within=600)
        events = await topic_events(cluster.bootstrap, run.settings, ids, within=120)
        dlq = await dead_letters(cluster.bootstrap, run.topic(SMS_INBOUND.dlq.name))
        dead = run.dead(victims=[])

    assert not dead, f"ended through the outages: {dead}"
    lost = ids - {e.id for e in events}
    assert not lost, f"{len(lost)} acknowledged SMS no longer on {SMS_INBOUND.name}"
    for how, down, started, _ in outages:
        refused = outage_answers(gateways.answers, down, started)
        assert refused, f"no push answered while the cluster was down ({how})"
        assert {(a.status, a.retry_after) for a in refused} == {(503, str(RETRY_AFTER_S))}, how
    got = assert_nothing_lost_nothing_twice(ids, rows, run.receiver, dlq)
    webhooks = sum(1 for d in run.receiver.received("ep1") if d.accepted)
    print(  # noqa: T201  (this run's figures, shown with pytest -s)
        f"\nwhole cluster down twice: {len(ids)} SMS acknowledged; "
        + "; ".join(
            f"{how}: {len(outage_answers(gateways.answers, d, s))} pushes refused, "
            f"started again in {b - s:.1f} s"
            for how, d, s, b in outages
        )
        + f"; {len(retried)} refused pushes retried; {webhooks} webhooks for {len(got)} SMS"
    )


async def keep_changing_members(
    run: Run,
    members: list[SimfleetProcess],
    *,
    gateways: Gateways,
    restart_postgres: Callable[[], object],
) -> list[str]:
    """The group's membership changed under load, a step each ``MEMBERS_STEP`` SMS: a member killed and
    a new one added, a member added, Postgres restarted, two killed at once and one added.
    Returns what was done, in order."""
    done: list[str] = []

    async def after_more() -> None:
        await acknowledged(gateways, time.monotonic(), MEMBERS_STEP)

    async def kill(count: int) -> None:
        living = [m for m in members if m.alive]
        for victim in living[:count]:
            await victim.sigkill()
        done.append(f"killed {count}")

    async def add() -> None:
        member = run.process("workers", "webhooks")
        members.append(member)
        await member.start()
        done.append("added 1")

    await after_more()
    await kill(1)
    await add()
    await after_more()
    await add()
    await after_more()
    await asyncio.to_thread(restart_postgres)
    done.append("postgres restarted")
    await after_more()
    await kill(2)
    await add()
    await after_more()
    return done


@pytest.mark.timeout(1800)
async def test_three_webhook_workers_killed_and_added_under_load_with_postgres_restarted(
    up: KafkaCluster, topic_prefix: str, logs: Path
) -> None:
    with restartable_postgres() as postgres:
        await migrate(postgres.url)

        def restart_postgres() -> None:
            postgres.stop()
            time.sleep(3.0)  # down long enough for every process to notice
            postgres.start()

        async with (
            simfleet_run(up, postgres.url, topic_prefix, logs) as run,
            httpx.AsyncClient(timeout=120) as http,
        ):
            members = [run.process("workers", "webhooks") for _ in range(3)]
            await asyncio.gather(*(p.start() for p in [*members, run.process("bridge")]))
            # paced (at most 16 SMS/s): the deliveries keep up on a busy machine, so the test
            # waits for the faults, not for a backlog
            gateways = Gateways(http, run.bridge_url, SECRET, GATEWAYS, ROWS, pause_s=5.0)
            gateways.start()
            steps = await keep_changing_members(
                run, members, gateways=gateways, restart_postgres=restart_postgres
            )
            await gateways.stop()
            retried = await gateways.retry_refused(within=120)
            ids = acknowledged_ids(gateways.answers + retried)
            rows = await stored(
                run.pool, ids, within=600, bootstrap=run.bootstrap, settings=run.settings
            )
            await webhooks_for(run.receiver, ids, within=600)
            dlq = await dead_letters(up.bootstrap, run.topic(SMS_INBOUND.dlq.name))
            dead = run.dead(victims=members)
            living = sum(1 for m in members if m.alive)

    assert not dead, f"ended although never killed: {dead}"
    assert sum(m.kills for m in members) == 3
    assert (len(members), living) == (6, 3), "three added, three living at the end"
    got = assert_nothing_lost_nothing_twice(ids, rows, run.receiver, dlq)
    webhooks = sum(1 for d in run.receiver.received("ep1") if d.accepted)
    print(  # noqa: T201
        f"\nthree members: {', '.join(steps)}; {len(ids)} SMS acknowledged, "
        f"{len(retried)} refused pushes retried; {webhooks} webhooks for {len(got)} SMS"
    )


SIMS = 240
KILLS_EACH = 3  # at least, per victim


async def keep_killing(victims: list[SimfleetProcess], done: asyncio.Event) -> int:
    """SIGKILL each victim a moment after it came up and start it again, until ``done`` and each
    died KILLS_EACH times; returns the kills that landed before ``done``."""
    dice = random.Random(11)  # noqa: S311 - timing dice, not cryptography
    while_busy = 0
    while not (done.is_set() and all(v.kills >= KILLS_EACH for v in victims)):
        for victim in victims:
            await asyncio.sleep(dice.uniform(1.0, 4.0))
            await victim.sigkill()
            while_busy += not done.is_set()
            await victim.start()
    return while_busy


async def lines(pool: asyncpg.Pool, iccids: list[str]) -> dict[str, str]:
    """The active SIMs of ``iccids`` that have a number, with it."""
    rows = await pool.fetch(
        "SELECT iccid, current_number FROM sims WHERE status = 'active' "
        "AND current_number IS NOT NULL AND iccid = ANY($1::text[])",
        iccids,
    )
    return {r["iccid"]: r["current_number"] for r in rows}


@pytest.mark.timeout(1800)
async def test_provisioning_and_rotation_workers_sigkilled_under_carrier_load_act_once(
    up: KafkaCluster, database_url: str, topic_prefix: str, logs: Path
) -> None:
    iccids = [make_iccid(n) for n in range(1, SIMS + 1)]
    bridge_port = free_port()
    config = {
        "client_id": CLIENT_ID,
        "username": USERNAME,
        "password": PASSWORD,
        "latency_s": 0.05,  # per Helix call: SIGKILLs land with calls in flight
        "bridge_url": f"http://127.0.0.1:{bridge_port}",
        "gateway_secret": SECRET,
    }
    async with carrier_process(config, logs / "carrier.log") as carrier:
        carrier_env = carrier.environment(CLIENT_ID, USERNAME, PASSWORD)
        async with simfleet_run(
            up, database_url, topic_prefix, logs, carrier=carrier_env, bridge_port=bridge_port
        ) as run:
            provisioning = run.process("workers", "provisioning")
            rotation = run.process("workers", "rotation")
            others = [run.process("bridge"), run.process("workers", "verification")]
            await asyncio.gather(*(p.start() for p in [*others, provisioning, rotation]))
            done = asyncio.Event()
            chaos = asyncio.create_task(keep_killing([provisioning, rotation], done))
            now = datetime.now(UTC)
            await run.bus.emit_many(
                SimActivationRequested.create(
                    producer="simfleet/test", time=now, iccid=iccid, imei=make_imei(n), ref="chaos"
                )
                for n, iccid in enumerate(iccids, 1)
            )
            first = await eventually(
                lambda: lines(run.pool, iccids), until=lambda got: set(got) == set(iccids), within=900,
                interval=1,
            )  # fmt: skip
            day = f"rotation:{now.date().isoformat()}"
            daily = [
                MdnChangeRequested.create(producer="simfleet/scheduler", time=now, iccid=i, ref=day)
                for i in iccids
            ]
            retries = [
                MdnChangeRequested.create(
                    producer="simfleet/scheduler", time=now, iccid=i, ref=retry_ref(day, 2)
                )
                for i in iccids
            ]
            # the daily request, the same request again (as a second scheduler would) and a
            # retry of it: one number change per SIM and day
            await run.bus.emit_many(
                [e for trio in zip(daily, daily, retries, strict=True) for e in trio]
            )
            rotated = await eventually(
                lambda: lines(run.pool, iccids),
                until=lambda got: all(got.get(i) not in (None, first[i]) for i in iccids),
                within=900,
                interval=1,
            )
            done.set()
            kills_while_busy = await chaos
            stats = await carrier.stats()
            async with httpx.AsyncClient() as http:
                at_carrier = {i: await carrier.number_of(http, i) for i in iccids}
            dlq = await dead_letters(up.bootstrap, run.topic(SIM_LIFECYCLE.dlq.name))
            dead = run.dead(victims=[provisioning, rotation])

    assert not dead, f"ended although never killed: {dead}"
    assert min(provisioning.kills, rotation.kills) >= KILLS_EACH
    assert kills_while_busy >= 2, "no kill landed while SIMs were being activated or rotated"
    activations = stats["activations"]
    assert set(activations) == set(iccids)
    assert max(activations.values()) == 1, "a SIM activated twice at the carrier"
    changes = stats["mdn_changes"]
    assert changes == dict.fromkeys(iccids, 1), "a number changed twice (or never) in the day"
    assert rotated == at_carrier, "the sims table and the carrier disagree on a number"
    assert dlq == 0, "sim.lifecycle records were dead-lettered"
    print(  # noqa: T201
        f"\ncarrier chaos: {SIMS} SIMs activated and rotated once each; provisioning killed "
        f"{provisioning.kills}x, rotation {rotation.kills}x ({kills_while_busy} while busy); "
        f"{stats['calls']}"
    )

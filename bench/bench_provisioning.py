"""Provisioning throughput: a sheet of SIMs → activation → numbers assigned, end to end.

Everything simfleet runs in this process (bulk import, the provisioning consumer group on a real
broker, the sims and helix_log projections on Postgres); the Helix sandbox runs in a child
process, so its CPU is not counted against the workers (each row gives both processes' CPU
seconds). The clock stops when ``sims`` shows every SIM ``active`` with a number. The workers and
the projector run on the event loop ``simfleet`` runs them on (``infra.event_loop``).

1. a zero-latency carrier, 10,000 SIMs — target 0.6x the time the code of ``BENCH_REFERENCE``
   (default ``REFERENCE_COMMIT``, the provisioning path before its CPU per carrier call was cut)
   takes in the same run: that commit is checked out under ``.simfleet/bench`` and measured by its
   own bench (through ``bench.provisioning_reference``), on the same broker and Postgres, right
   after this code's own measurement. The
   quiet figure ``BASELINE`` (and the commit it was taken on) is printed beside it;
2. a carrier answering every API call after 300 ms — the target is the bound the configuration
   sets: each SIM needs two calls (activate, details) one after the other, at most
   ``HX_CONCURRENCY`` calls are in flight and at most ``HX_RATE_LIMIT_PER_S`` start per second
   (the provisioning group runs SIMs, not partitions, concurrently).

    .venv/bin/python -m bench.bench_provisioning
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from bench import provisioning_reference
from bench.support import STATE_DIR, bench_settings, cpu_s, dsn_of, fresh_database
from consumers import provisioning
from infra import event_loop
from infra.bus import Bus
from infra.clock import SystemClock
from infra.dead_letters import DeadLetters
from infra.helix.client import HelixClient
from infra.http import free_port
from infra.kafka import build_broker, ensure_topics
from infra.postgres import create_pool
from infra.settings import HelixSettings, KafkaSettings, Settings
from producers.bulk_import import import_sims, parse_rows
from projections.helix_log import HelixLogProjection
from projections.runner import ProjectionRunner
from projections.sims import SimsProjection
from sandbox.helix_world import make_iccid, make_imei

CLIENT_ID, USERNAME, PASSWORD = "bench-client", "bench@simfleet.example", "bench-grant-pass"
CALLS_PER_SIM = 2  # activate + details (the token is fetched once)
# the zero-latency 10,000 SIMs before the provisioning path changed, on a quiet machine, Tansu,
# projections in the workers' process (349.4 s on a machine at load ~30: a loaded baseline
# flatters the change, whose gain is mostly fewer round trips, so the quiet figure is the one
# held to); the target is a share of it
BASELINE_S, BASELINE_COMMIT, TARGET_SHARE = 38.7, "c26c2a4", 0.6
# the reference measured in the same run: the provisioning path as it was before its CPU per
# carrier call was cut (03162f3 took 38.9 s on the quiet machine of BASELINE_S, Tansu); "" runs
# none. 542ced1 has that same provisioning path, and a bench whose ``measure`` matches this one
REFERENCE_COMMIT = os.environ.get("BENCH_REFERENCE", "542ced1")
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    name: str
    sims: int
    latency_s: float
    concurrency: int  # HX_CONCURRENCY: carrier calls in flight
    rate_per_s: float  # HX_RATE_LIMIT_PER_S
    partitions: int  # sim.lifecycle partitions

    def bound_s(self) -> float:
        """The least time the configuration allows for the carrier calls alone."""
        if self.latency_s == 0:
            return 0.0
        in_flight = self.concurrency / self.latency_s  # calls/s the client can have answered
        sims_per_s = min(in_flight / CALLS_PER_SIM, self.rate_per_s / CALLS_PER_SIM)
        return self.sims / sims_per_s


SCENARIOS = (
    Scenario("zero-latency carrier", int(os.environ.get("BENCH_SIMS", "10000")), 0.0, 12, 1e6, 12),
    Scenario("300 ms per carrier call", 1000, 0.3, 16, 50.0, 16),
)
# BENCH_PROVISIONING=zero|latency runs one scenario alone
ONLY = os.environ.get("BENCH_PROVISIONING", "")
PROJECTOR_DSN, PROJECTOR_KAFKA = "BENCH_PROJECTOR_DSN", "BENCH_PROJECTOR_KAFKA"
INLINE_PROJECTOR = os.environ.get("BENCH_PROJECTOR") == "inline"
PROCESSES = (
    "workers + projections 1, carrier 1"
    if INLINE_PROJECTOR
    else "workers 1, projector 1, carrier 1"
)


def sheet(n: int, base: int) -> bytes:
    rows = "".join(f"{make_iccid(base + i)},{make_imei(base + i)},,\n" for i in range(n))
    return ("iccid,imei,reseller_id,status\n" + rows).encode()


@contextlib.asynccontextmanager
async def child_process(
    *args: str, env: dict[str, str] | None = None, ready_line: bool = False
) -> AsyncIterator[int]:
    """This module run again in a process of its own (``--sandbox``, ``--projector``);
    ``ready_line``: yields once the child wrote its first line (it is ready)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_provisioning", *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE if ready_line else None,
    )  # fmt: skip
    try:
        if ready_line and child.stdout is not None:
            async with asyncio.timeout(300):
                await child.stdout.readline()
        yield child.pid
    finally:
        child.terminate()
        await child.wait()


@contextlib.asynccontextmanager
async def sandbox_process(latency_s: float) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with child_process("--sandbox", str(port), str(latency_s)) as pid:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    await http.get("/_sandbox/stats")
                    break
                await asyncio.sleep(0.05)
        yield url, pid


@contextlib.asynccontextmanager
async def projector_process(dsn: str, kafka: KafkaSettings) -> AsyncIterator[int | None]:
    """The sims and helix_log projections in their own process, as ``simfleet projector`` runs
    them beside ``simfleet workers``; None: they run in this process (BENCH_PROJECTOR=inline)."""
    if INLINE_PROJECTOR:
        yield None
        return
    # the database URL (with its password) by the environment, not on a command line
    env = {PROJECTOR_DSN: dsn, PROJECTOR_KAFKA: kafka.model_dump_json()}
    async with child_process("--projector", env=env, ready_line=True) as pid:
        yield pid


def serve_projector() -> None:
    kafka = KafkaSettings.model_validate_json(os.environ[PROJECTOR_KAFKA])
    event_loop.run(project(os.environ[PROJECTOR_DSN], kafka))


async def project(dsn: str, kafka: KafkaSettings) -> None:
    bootstrap = kafka.kafka_bootstrap_servers or ""
    pool = await create_pool(dsn, min_size=2, max_size=8)
    broker = build_broker(kafka, bootstrap, client_id="simfleet-projector")
    await broker.start()
    runners = projections(pool, Bus(broker, kafka.topic_prefix), kafka)
    running = [asyncio.create_task(runner.run()) for runner in runners]
    await joined(runners)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*running)


def projections(pool: asyncpg.Pool, bus: Bus, kafka: KafkaSettings) -> list[ProjectionRunner]:
    bootstrap = kafka.kafka_bootstrap_servers or ""
    return [
        ProjectionRunner(
            p, bootstrap=bootstrap, kafka=kafka, pool=pool, dead_letters=DeadLetters(bus, p.name)
        )
        for p in (SimsProjection(), HelixLogProjection())
    ]


async def joined(runners: list[ProjectionRunner]) -> None:
    """Every runner has its partitions (the group join is not part of the measured time)."""
    async with asyncio.timeout(120):
        await asyncio.gather(*(runner.assigned.wait() for runner in runners))


def serve_sandbox(port: int, latency_s: float) -> None:
    import uvicorn

    from sandbox.helix import HelixFaults, create_helix_sandbox
    from sandbox.helix_world import HelixWorld

    world = HelixWorld(client_id=CLIENT_ID, username=USERNAME, password=PASSWORD)
    faults = HelixFaults(latency_s=latency_s)
    app = create_helix_sandbox(world, "slow" if latency_s > 0 else "happy", faults)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def helix_settings(url: str, s: Scenario) -> HelixSettings:
    return HelixSettings(
        api_base=url,
        token_url=f"{url}/oauth/token",
        client_id=CLIENT_ID,
        grant_username=USERNAME,
        grant_password=SecretStr(PASSWORD),
        timeout_s=30.0,
        rate_limit_per_s=s.rate_per_s,
        concurrency=s.concurrency,
        number_wait_s=5.0,
        number_poll_s=0.2,
    )


@dataclass(frozen=True)
class Measured:
    elapsed: float  # import started → every SIM active with a number
    imported: float  # import started → Kafka acknowledged every request
    done: int
    once: bool  # the carrier activated each ICCID exactly once
    calls: int  # carrier API calls (tokens excluded)
    workers_cpu_s: float  # this process (import, provisioning group) while measured
    carrier_cpu_s: float  # the sandbox's process over the same span
    projector_cpu_s: float | None  # the projections' process; None: they ran in this one
    transactions: int  # Postgres transactions in the bench's database (a round trip or more each)


async def measure(base: Settings, s: Scenario, serial: int) -> Measured:
    kafka = base.kafka.model_copy(
        update={
            "topic_prefix": f"{base.kafka.topic_prefix}{serial}.",
            "kafka_partitions": {"sim.lifecycle": s.partitions},
        }
    )
    bootstrap = kafka.kafka_bootstrap_servers or ""
    await ensure_topics(bootstrap, kafka)
    async with (
        fresh_database(dsn_of(base)) as dsn,
        sandbox_process(s.latency_s) as (url, carrier),
        projector_process(dsn, kafka) as projector,
    ):
        settings = base.model_copy(update={"kafka": kafka, "helix": helix_settings(url, s)})
        pool = await create_pool(dsn, min_size=4, max_size=20)
        # the transport the composition root should use too: httpx's own costs ~3 ms CPU a call
        http = httpx.AsyncClient(base_url=url, timeout=30.0, transport=AiohttpTransport())
        broker = build_broker(kafka, bootstrap)
        bus = Bus(broker, kafka.topic_prefix)
        helix = HelixClient(http, settings.helix, pool, bus.emit)
        broker.include_router(provisioning.build_router(settings))
        clock = SystemClock()
        context = {"bus": bus, "pool": pool, "settings": settings, "helix": helix, "clock": clock}
        for name, value in context.items():
            broker.context.set_global(name, value)
        await broker.start()
        inline = [] if projector else projections(pool, bus, kafka)
        runners = [asyncio.create_task(runner.run()) for runner in inline]
        try:
            await joined(inline)
            parsed = parse_rows(sheet(s.sims, 10_000_000 * (serial + 1)), "sims.csv")
            started = time.perf_counter()
            cpu_started, carrier_started = cpu_seconds(), cpu_s(carrier)
            projector_started = cpu_s(projector) if projector else 0.0
            xacts_started = await transactions(pool)
            await import_sims(parsed, bus, clock)
            imported = time.perf_counter() - started
            done = await wait_all_active(pool, s.sims)
            elapsed = time.perf_counter() - started
            workers_cpu = cpu_seconds() - cpu_started
            carrier_used = cpu_s(carrier) - carrier_started
            projector_used = cpu_s(projector) - projector_started if projector else None
            await asyncio.sleep(1.5)  # Postgres publishes its counters about once a second
            xacts = await transactions(pool) - xacts_started
            async with httpx.AsyncClient(base_url=url) as admin:
                stats: dict[str, Any] = (await admin.get("/_sandbox/stats")).json()
        finally:
            for task in runners:
                task.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            await broker.stop()
            await http.aclose()
            await pool.close()
    once = sorted(set(stats["activations"].values())) == [1] and len(stats["activations"]) == s.sims
    calls = sum(v for k, v in stats["calls"].items() if k != "token")
    return Measured(
        elapsed, imported, done, once, calls, workers_cpu, carrier_used, projector_used, xacts
    )


async def on_service_loop(measuring: Coroutine[Any, Any, Measured]) -> Measured:
    """Measured on the loop ``simfleet workers`` runs on (``infra.event_loop``), in a thread of
    its own: the harness's loop, which may be another, only waits for it."""
    return await asyncio.to_thread(event_loop.run, measuring)


def reference_tree(commit: str) -> Path:
    """The code at ``commit`` (checked out once), its own bench included, with the one entry
    point the reference is run through (``bench.provisioning_reference``) beside it."""
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    # "own-": trees checked out before kept this bench copied over the reference's own
    tree = ROOT / STATE_DIR / f"reference-own-{full[:12]}"
    if not (tree / ".complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(git("archive", full))) as archive:
            archive.extractall(tree, filter="data")
        (tree / ".complete").touch()
    entry = Path(provisioning_reference.__file__)
    shutil.copy2(entry, tree / "bench" / entry.name)
    return tree


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


async def measure_reference(base: Settings, s: Scenario, serial: int) -> Measured | None:
    """``s`` measured on the code at ``REFERENCE_COMMIT``, on this run's broker and Postgres."""
    if not REFERENCE_COMMIT:
        return None
    tree = await asyncio.to_thread(reference_tree, REFERENCE_COMMIT)
    env = {
        **os.environ,
        provisioning_reference.DSN: dsn_of(base),
        provisioning_reference.KAFKA: base.kafka.model_dump_json(),
        "BENCH_REFERENCE": "",
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.provisioning_reference", "bench.bench_provisioning", s.name, str(serial),
        cwd=tree, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode:
        raise RuntimeError(f"the reference run at {REFERENCE_COMMIT} failed ({child.returncode})")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    missing = [f.name for f in dataclasses.fields(Measured) if f.name not in figures]
    if missing:
        raise RuntimeError(f"the reference at {REFERENCE_COMMIT} does not measure {missing}")
    return Measured(**{f.name: figures[f.name] for f in dataclasses.fields(Measured)})


async def transactions(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def broker_of(settings: Settings) -> str:
    """The embedded Tansu is the broker without an idempotent producer."""
    return "kafka" if settings.kafka.kafka_idempotence else "tansu"


async def wait_all_active(pool: asyncpg.Pool, n: int, timeout_s: float = 900.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        done = int(
            await pool.fetchval(
                "SELECT count(*) FROM sims WHERE status = 'active' AND current_number IS NOT NULL"
            )
        )
        if done >= n or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.25)


async def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    async with bench_settings() as base:
        for serial, s in enumerate(SCENARIOS):
            if ONLY and ("latency" if s.latency_s else "zero") != ONLY:
                continue
            m = await on_service_loop(measure(base, s, serial))
            elapsed = m.elapsed
            # the reference's topics get serials of their own
            ref = None if s.latency_s else await measure_reference(base, s, serial + 100)
            config = f"HX_CONCURRENCY={s.concurrency}, {s.partitions} partitions"
            if s.latency_s:
                config += f", HX_RATE_LIMIT_PER_S={s.rate_per_s:g}"
            detail = (
                f"{m.done:,}/{s.sims:,} active with numbers, {s.sims / elapsed:,.0f} SIMs/s, "
                f"import published in {m.imported:.1f} s, {m.calls:,} carrier calls, "
                f"one activation per ICCID: {'yes' if m.once else 'NO'}; {config}; "
                f"CPU: {cpu_of(m)}; "
                f"Postgres transactions per SIM {m.transactions / s.sims:.1f} "
                "(projections and the bench's polling included)"
            )
            if ref is not None:
                detail += (
                    f"; the same run at {REFERENCE_COMMIT}: {ref.elapsed:.1f} s, "
                    f"{ref.done:,}/{s.sims:,} active, one activation per ICCID: "
                    f"{'yes' if ref.once else 'NO'}, CPU: {cpu_of(ref)}"
                )
            rows.append(
                {
                    "benchmark": f"provisioning {s.sims:,} SIMs, {s.name}",
                    "value": round(elapsed, 1),
                    "unit": "s",
                    "target": target_of(s, m, ref),
                    "detail": detail,
                    "broker": broker_of(base),
                    "processes": PROCESSES,
                }
            )
    return rows


def cpu_of(m: Measured) -> str:
    if m.projector_cpu_s is None:
        return f"workers + projections {m.workers_cpu_s:.1f} s, carrier {m.carrier_cpu_s:.1f} s"
    return (
        f"workers {m.workers_cpu_s:.1f} s, projector {m.projector_cpu_s:.1f} s, "
        f"carrier {m.carrier_cpu_s:.1f} s"
    )


def target_of(s: Scenario, m: Measured, ref: Measured | None) -> str:
    elapsed = m.elapsed
    if s.latency_s:
        return f">= bound {s.bound_s():.1f} s (measured / bound = {elapsed / s.bound_s():.2f})"
    quiet = (
        f"{BASELINE_S:.1f} s quiet at {BASELINE_COMMIT} (now {elapsed / BASELINE_S:.2f} x)"
        if BASELINE_S
        else "(no quiet baseline recorded)"
    )
    if ref is None:
        return f"<= {TARGET_SHARE * BASELINE_S:.1f} s = {TARGET_SHARE:g} x {quiet}"
    # on a shared machine the wall times follow the others' load, which may change between the
    # two measurements; the CPU the three processes used is steadier, so it is printed too
    return (
        f"<= {TARGET_SHARE:g} x the same run at {REFERENCE_COMMIT}: {TARGET_SHARE * ref.elapsed:.1f}"
        f" s (now {elapsed / ref.elapsed:.2f} x; CPU of workers, projector and carrier "
        f"{cpu_total(m) / cpu_total(ref):.2f} x); beside {quiet}"
    )


def cpu_total(m: Measured) -> float:
    return m.workers_cpu_s + (m.projector_cpu_s or 0.0) + m.carrier_cpu_s


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sandbox"]:
        serve_sandbox(int(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1:2] == ["--projector"]:
        serve_projector()
    else:
        from bench.__main__ import print_table

        print_table(asyncio.run(run()))

"""A running number cycle for integration tests: the Helix sandbox and the sandbox gateways over
real HTTP, the gateway bridge over real HTTP, a real broker with the verification and rotation
routers, and the sims + gateways projections on Postgres.

Run by the composition root's runtime (``simfleet.app.runtime``): routers from
``build_router(settings)`` find ``bus``, ``pool``, ``clock``, ``settings``, ``helix`` and
``skyline`` in the broker's context; the Helix and Skyline clients are the test's own (quick and
patient with the sandbox's faults).
SIMs are seeded as the provisioning flows would have left them: a line at the carrier with a
number, a seat in a gateway port, and ``sims`` / ``sim_numbers`` rows (inserted directly).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
from pydantic import SecretStr

from consumers import rotation
from consumers.verification import consumer as verification
from consumers.verification.sweeps import VerificationSweeps
from events import decode
from events.envelope import Event
from events.sim import NumberAssigned
from events.topics import SIM_LIFECYCLE, Topic
from infra.bus import Bus
from infra.clock import Clock, SystemClock
from infra.gateway_clients import GatewayClients
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.postgres import create_pool
from infra.retry import RetryPolicy
from infra.settings import (
    RotationSettings,
    SecretsSettings,
    Settings,
    SkylineSettings,
    VerificationSettings,
)
from producers.scheduler import Scheduler
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.bridge import create_bridge_app
from projections.gateways import GatewaysProjection
from projections.helix_log import HelixLogProjection
from projections.sims import SimsProjection
from sandbox.gateway_api import gateway_addresses, serve_gateways
from sandbox.gateways import GatewayNetwork
from sandbox.helix import HelixSandbox, create_helix_sandbox, sandbox_of
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from sandbox.skyline import DEFAULT_GATEWAY_ID, SandboxGateway
from simfleet.app import Runtime, runtime
from simfleet.endpoints import Endpoints
from tests.support.eventually import eventually
from tests.support.fleet import (
    CLIENT_ID,
    GRANT_PASSWORD,
    PATIENT,
    USERNAME,
    helix_settings,
    read_topic,
)
from tests.support.projecting import projecting

GATEWAY_SECRET = "gw-secret-numbers-4b1d"
SK_PASSWORD = "sk-p4ss-Numbers-7q"
FAST = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05, budget_s=5.0)
E = TypeVar("E", bound=Event)
# Kafka's default session time-out, not the suite's 2 s: with a dozen groups, two sandboxes and
# the bridge in one process on a loaded machine, a 2 s session lapses (the broker marks the
# member gone, "member_id was not recognized"), the group rebalances, and the records in flight
# are read again: a redelivered request re-emits its outcome, which these tests count. The
# heartbeat stays short: a member learns of a rebalance (its flow's concurrent consumers
# joining one by one) at its next heartbeat, and Kafka's 2 s made each such round last seconds.
PATIENT_GROUPS = {"kafka_session_timeout_ms": 10_000, "kafka_heartbeat_interval_ms": 500}


@dataclass(frozen=True)
class Sim:
    iccid: str
    number: str
    subscription_id: str
    gateway_id: str
    port: str


@dataclass
class NumberWorld:
    settings: Settings
    bootstrap: str
    carrier: HelixWorld
    network: GatewayNetwork
    pool: asyncpg.Pool
    bus: Bus
    skyline: GatewayClients
    bridge_url: str
    database_url: str
    clock: Clock = field(default_factory=SystemClock)
    carrier_sandbox: HelixSandbox | None = None  # switch its fault mode in a test
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def add_sim(self, serial: int, *, verified: bool = True) -> Sim:
        """A line with a number, in a port, with the rows provisioning would have left."""
        iccid = make_iccid(serial)
        sub = self.carrier.activate({"service": {"iccid": iccid, "imei": make_imei(serial)}})
        self.carrier.details({"mobilitySubscriptionId": sub.subscription_id})  # number shows
        assert sub.phone_number is not None
        gateway_id, port = self.network.ports.insert_sim(iccid)
        number, since = f"+1{sub.phone_number}", self.clock.now() - timedelta(days=2)
        status = "verified" if verified else "pending"
        proven = self.clock.now() - timedelta(hours=1) if verified else None
        await self.pool.execute(
            "INSERT INTO sims (iccid, status, mobility_subscription_id, current_number, "
            "number_status, gateway_id, port, activated_at) "
            "VALUES ($1, 'active', $2, $3, $4, $5, $6, $7)",
            iccid, str(sub.subscription_id), number, status, gateway_id, port, since,
        )  # fmt: skip
        await self.pool.execute(
            "INSERT INTO sim_numbers (assignment_id, iccid, e164, source, valid_from, "
            "verification_status, verified_at) VALUES ($1, $2, $3, 'activation', $4, $5, $6)",
            f"seed:{iccid}", iccid, number, since, status, proven,
        )  # fmt: skip
        return Sim(iccid, number, str(sub.subscription_id), gateway_id, port)

    def assigned(self, sim: Sim, ref: str = "activation") -> NumberAssigned:
        """The number.assigned the finalizer emits for a new line."""
        return NumberAssigned.create(
            producer="simfleet/finalizer", time=self.clock.now(), iccid=sim.iccid,
            request_id=f"{ref}:{sim.iccid}", number=sim.number, source="activation",
            mobility_subscription_id=sim.subscription_id,
        )  # fmt: skip

    async def emit(self, *events: Event) -> None:
        await self.bus.emit_many(events)

    async def reply(self, sim: Sim, body: str, *, sender: str = "+15550001111") -> None:
        """An SMS arriving on the SIM's port, pushed to the bridge as its gateway pushes it."""
        async with SandboxGateway(self.bridge_url, sim.gateway_id, GATEWAY_SECRET) as gateway:
            await gateway.push_sms(sim.port, sender, sim.number, body, iccid=sim.iccid)

    async def events(self, kind: type[E], topic: Topic = SIM_LIFECYCLE) -> list[E]:
        records = await read_topic(self.bootstrap, self.settings, topic)
        return [e for e in (decode(r.value) for r in records) if isinstance(e, kind)]

    async def wait_for(
        self, kind: type[E], until: Callable[[list[E]], bool] = bool, within: float = 15.0
    ) -> list[E]:
        return await eventually(lambda: self.events(kind), until=until, within=within, interval=0.2)

    async def verification(self, **where: str) -> asyncpg.Record | None:
        ((column, value),) = where.items()
        return await self.pool.fetchrow(
            f"SELECT * FROM verifications WHERE {column} = $1 ORDER BY created_at DESC LIMIT 1",  # noqa: S608
            value,
        )

    async def scheduler(self, clock: Clock | None = None) -> Scheduler:
        """A scheduler with its own pool, as another process would have."""
        return Scheduler(await self.own_pool(), self.bus, clock or self.clock, self.settings)

    async def verification_sweeps(self, clock: Clock | None = None) -> VerificationSweeps:
        """The verification flow's sweeps with their own pool, as the scheduler process runs them."""
        pool = await self.own_pool()
        return VerificationSweeps(pool, self.bus, clock or self.clock, self.settings)

    async def own_pool(self) -> asyncpg.Pool:
        pool = await create_pool(self.database_url, min_size=1, max_size=4)
        self.stack.push_async_callback(pool.close)
        return pool

    async def dead_letters(self) -> int:
        return len(await read_topic(self.bootstrap, self.settings, SIM_LIFECYCLE.dlq))


def rotation_settings(**overrides: Any) -> RotationSettings:
    fields: dict[str, Any] = {"verification_expiry_s": 30.0, "min_number_age_s": 0.0}
    return RotationSettings(**(fields | overrides))


@contextlib.asynccontextmanager
async def running_numbers(
    settings: Settings,
    bootstrap: str,
    database_url: str,
    *,
    rotation_config: RotationSettings | None = None,
    verification_config: VerificationSettings | None = None,
    flows: tuple[Any, ...] = (verification, rotation),
    clock: Clock | None = None,
    gateways: tuple[str, ...] = (DEFAULT_GATEWAY_ID,),
    listed: bool = True,
    gateway_port: int = 0,
    helix_log: bool = False,
) -> AsyncIterator[NumberWorld]:
    """The world; ``flows``: the consumer modules to run (each costs a group join at start);
    ``clock``: the consumers' (and ``world.clock``), the system's by default; ``gateways``:
    the sandbox gateways, each at its own address with its own password, listed in
    SK_GATEWAYS unless ``listed`` is False (then learnt from their pushes: all serve on
    ``gateway_port``, SK_PORT, and take SK_USERNAME/SK_PASSWORD); ``helix_log``: project the
    Helix calls into ``helix_api_logs`` too."""
    carrier = HelixWorld(client_id=CLIENT_ID, username=USERNAME, password=GRANT_PASSWORD)
    network = GatewayNetwork(carrier, password=SK_PASSWORD, gateways=gateways)
    if not listed:  # what an unlisted gateway is reached with
        network.credentials = dict.fromkeys(network.credentials, ("sandbox", SK_PASSWORD))
    helix_app = create_helix_sandbox(carrier)
    async with (
        serve_http(helix_app) as helix_url,
        serve_gateways(network, gateway_port) as gateway_urls,
        contextlib.AsyncExitStack() as stack,
    ):
        stack.push_async_callback(network.aclose)
        settings = settings.model_copy(
            update={
                "helix": helix_settings(helix_url),
                "skyline": SkylineSettings(
                    username="sandbox",
                    password=SecretStr(SK_PASSWORD),
                    port=gateway_port or 80,
                    gateways=gateway_addresses(network, gateway_urls) if listed else (),
                ),
                "secrets": SecretsSettings(gateway_secret=SecretStr(GATEWAY_SECRET)),
                "rotation": rotation_config or rotation_settings(),
                "verification": verification_config or settings.verification,
                "kafka": settings.kafka.model_copy(update=PATIENT_GROUPS),
                "postgres": settings.postgres.model_copy(
                    update={"database_pool_min": 2, "database_pool_max": 16}
                ),
            }
        )

        @contextlib.asynccontextmanager
        async def sandbox_clients(rt: Runtime) -> AsyncIterator[None]:
            """The test's carrier and gateway clients: quick and patient with the sandbox."""
            async with httpx.AsyncClient(base_url=helix_url, timeout=5.0) as http:
                rt.helix = HelixClient(http, settings.helix, rt.pool, rt.bus.emit, policy=PATIENT)
                rt.skyline = GatewayClients(settings.skyline, rt.pool, policy=FAST)
                try:
                    yield
                finally:
                    await rt.skyline.aclose()

        endpoints = Endpoints(bootstrap, database_url)
        routers = [flow.build_router(settings) for flow in flows]
        rt = await stack.enter_async_context(
            runtime(
                settings, endpoints, routers, clock=clock or SystemClock(),
                providers=[sandbox_clients],
            )
        )  # fmt: skip
        assert rt.skyline is not None
        pool, bus = rt.pool, rt.bus
        arrivals = SmsArrivals(pool, settings.bridge_retry_window_s)
        bridge_url = await stack.enter_async_context(
            serve_http(create_bridge_app(settings, bus, SystemClock(), arrivals))
        )
        network.connect_bridge(bridge_url, GATEWAY_SECRET)
        world = NumberWorld(
            settings, bootstrap, carrier, network, pool, bus, rt.skyline, bridge_url,
            database_url, clock=rt.clock, carrier_sandbox=sandbox_of(helix_app),
        )  # fmt: skip
        projections = (SimsProjection(), GatewaysProjection())
        await stack.enter_async_context(
            projecting(
                (*projections, *((HelixLogProjection(),) if helix_log else ())),
                bootstrap=bootstrap, kafka=settings.kafka, pool=pool, bus=bus,
            )
        )  # fmt: skip
        async with world.stack:
            yield world


def at_utc(day_offset: int, hour: int, minute: int = 0) -> datetime:
    today = datetime.now(UTC).date() + timedelta(days=day_offset)
    return datetime(today.year, today.month, today.day, hour, minute, tzinfo=UTC)

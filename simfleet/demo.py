"""The demo world of ``make run``: a small fleet, one reseller, and SMS flowing to its webhook.

In development with the sandbox carrier and gateways it imports a sheet of sandbox SIMs,
registers a reseller whose endpoint is the sandbox receiver, assigns it the SIMs, then keeps
texting the SIMs' numbers from outside (as services sending codes would). Each SMS travels
gateway push → bridge → Kafka → webhook consumer → signed POST to the receiver.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import structlog

from infra.actors import SYSTEM
from infra.bus import Bus
from infra.clock import Clock
from infra.settings import WebhookSettings
from infra.webhook_signing import SecretBox
from producers.bulk_import import import_sims, parse_rows
from producers.reseller_commands import CommandRejected, ResellerCommands
from projections.reseller_queries import get_reseller, list_endpoints
from sandbox.gateways import GatewayNetwork
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from sandbox.reseller import ReceiverState

log = structlog.get_logger("simfleet.demo")

RESELLER = "demo"
GATEWAYS = ("00-30-f1-00-00-01", "00-30-f1-00-00-02", "00-30-f1-00-00-03")  # the SIMs spread
ACTOR = SYSTEM  # the demo seed is not an operator command: it stays out of the audit
OUTSIDE_SENDER = "+18005550100"
NUMBERED = "SELECT iccid, current_number FROM sims WHERE current_number IS NOT NULL ORDER BY iccid"
CARRIER_LINES = """
SELECT iccid, imei, mobility_subscription_id, current_number FROM sims
WHERE status IN ('active', 'suspended') AND current_number IS NOT NULL
  AND mobility_subscription_id ~ '^[0-9]{1,9}$'
"""
NUMBERED_ANY = "SELECT 1 FROM sims WHERE current_number IS NOT NULL LIMIT 1"
DEMO_REPORT_S = 60.0


def demo_sheet(count: int) -> bytes:
    rows = [f"{make_iccid(n)},{make_imei(n)},{RESELLER},pending" for n in range(1, count + 1)]
    return ("iccid,imei,reseller_id,status\n" + "\n".join(rows) + "\n").encode()


async def _projected(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Waits (up to a minute) until the projector has applied what was just emitted."""
    async with asyncio.timeout(60):
        while not await pool.fetchval(sql, *args):  # noqa: ASYNC110 (polling another process's write)
            await asyncio.sleep(0.5)


async def restore_lines(pool: asyncpg.Pool, world: HelixWorld) -> int:
    """The sandbox carrier starts empty with every process while the read tables remain: it is
    told the lines they hold, so a restarted demo's SIMs keep their numbers and their SMS flow."""
    rows = await pool.fetch(CARRIER_LINES)
    for row in rows:
        world.restore(
            int(row["mobility_subscription_id"]),
            row["iccid"],
            row["imei"] or "",
            row["current_number"],
        )
    return len(rows)


async def seed(
    pool: asyncpg.Pool,
    bus: Bus,
    *,
    clock: Clock,
    webhooks: WebhookSettings,
    box: SecretBox,
    receiver: ReceiverState,
    receiver_url: str,
    sims: int,
) -> None:
    """Idempotent: a second start finds the reseller and endpoint and changes nothing."""
    commands = ResellerCommands(pool=pool, bus=bus, box=box, settings=webhooks, clock=clock)
    if await get_reseller(pool, RESELLER) is None:
        await commands.create_reseller(RESELLER, "Demo reseller", ACTOR)
        await _projected(pool, "SELECT 1 FROM resellers WHERE id = $1", RESELLER)
    if not await list_endpoints(pool, RESELLER):
        issued = await commands.add_endpoint(
            RESELLER, f"{receiver_url}/hooks/demo", ACTOR, endpoint_id="demo"
        )
        receiver.register(issued.endpoint_id, issued.secret)
        await _projected(pool, "SELECT 1 FROM reseller_webhooks WHERE endpoint_id = 'demo'")
    else:  # the receiver forgot the secret with the last process: give it a fresh one
        with_secret = await commands.rotate_secret(RESELLER, "demo", ACTOR)
        receiver.register("demo", with_secret.secret)
    report = await import_sims(parse_rows(demo_sheet(sims), "demo.csv"), bus, clock)
    log.info("demo_fleet_imported", summary=report.summary())
    try:
        await commands.assign_sims(RESELLER, [make_iccid(n) for n in range(1, sims + 1)], ACTOR)
    except CommandRejected as err:
        log.warning("demo_assign_refused", reason=str(err))


async def traffic(
    pool: asyncpg.Pool, network: GatewayNetwork, receiver: ReceiverState, interval_s: float
) -> None:
    """Texts every numbered SIM now and then, the first round as soon as a SIM has a number;
    logs the first webhook the reseller received, then its counts once a minute."""
    sent, reported_at = 0, None
    loop = asyncio.get_running_loop()
    while not await pool.fetchval(NUMBERED_ANY):  # noqa: ASYNC110 (the projector's write)
        await asyncio.sleep(0.25)
    while True:
        for row in await pool.fetch(NUMBERED):
            code = f"{secrets.randbelow(1_000_000):06d}"
            fate = await network.text_from_outside(
                OUTSIDE_SENDER, row["current_number"], f"Your demo code is {code}"
            )
            sent += fate == "delivered"
        received = len(receiver.received())
        if (reported_at is None and received) or (
            reported_at is not None and loop.time() - reported_at >= DEMO_REPORT_S
        ):
            log.info("demo_traffic", sms_sent=sent, webhooks_received=received)
            reported_at = loop.time()
        await asyncio.sleep(interval_s)

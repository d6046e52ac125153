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
from infra.clock import Clock
from infra.kafka import Bus
from infra.settings import WebhookSettings
from infra.webhook_signing import SecretBox
from producers.bulk_import import import_sims, parse_rows
from producers.reseller_commands import CommandRejected, ResellerCommands
from projections.reseller_queries import get_reseller, list_endpoints
from sandbox.gateways import GatewayNetwork
from sandbox.helix_world import make_iccid, make_imei
from sandbox.reseller import ReceiverState

log = structlog.get_logger("simfleet.demo")

RESELLER = "demo"
GATEWAYS = ("00-30-f1-00-00-01", "00-30-f1-00-00-02", "00-30-f1-00-00-03")  # the SIMs spread
ACTOR = SYSTEM  # the demo seed is not an operator command: it stays out of the audit
OUTSIDE_SENDER = "+18005550100"
NUMBERED = "SELECT iccid, current_number FROM sims WHERE current_number IS NOT NULL ORDER BY iccid"


def demo_sheet(count: int) -> bytes:
    rows = [f"{make_iccid(n)},{make_imei(n)},{RESELLER},pending" for n in range(1, count + 1)]
    return ("iccid,imei,reseller_id,status\n" + "\n".join(rows) + "\n").encode()


async def _projected(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Waits (up to a minute) until the projector has applied what was just emitted."""
    async with asyncio.timeout(60):
        while not await pool.fetchval(sql, *args):  # noqa: ASYNC110 (polling another process's write)
            await asyncio.sleep(0.5)


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
    """Texts every numbered SIM now and then; logs how many webhooks the reseller received."""
    sent = 0
    while True:
        await asyncio.sleep(interval_s)
        for row in await pool.fetch(NUMBERED):
            code = f"{secrets.randbelow(1_000_000):06d}"
            fate = await network.text_from_outside(
                OUTSIDE_SENDER, row["current_number"], f"Your demo code is {code}"
            )
            sent += fate == "delivered"
        log.info("demo_traffic", sms_sent=sent, webhooks_received=len(receiver.received()))

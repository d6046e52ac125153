"""The one failure policy: an *outage* is waited out, anything else is *poison* and parked.

An outage means Postgres or the broker is away for a while — a restart, a failover, the network,
a full connection table — as opposed to a bug or bad data. Every consumer kind asks this module:
the per-message dead-letter middleware, the batch consumers, provisioning, the projection runner,
the scheduler and the webhook dispatcher wait and try again on an outage; on anything else they
park the event (``<topic>.dlq``) or stop, since trying again would fail the same way. A missing
column or table is a bug, never "waiting for Postgres".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from infra.bus import BrokerUnavailable

log = structlog.get_logger("simfleet.outages")

OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # the server shutting down or not yet accepting
    asyncpg.InsufficientResourcesError,  # too many connections, disk full, out of memory
    asyncpg.ReadOnlySQLTransactionError,  # a failover left us on a standby for a moment
    asyncpg.InterfaceError,  # a connection closed under the client
    # a server shutting down sends its FATAL error to connections idle in a transaction; the
    # next statement there (typically COMMIT) fails with this before the pool notices
    asyncpg.InternalClientError,
    asyncpg.TransactionRollbackError,  # a deadlock or serialization failure: try again
    OSError,
    TimeoutError,
    BrokerUnavailable,
)


def is_outage(err: BaseException) -> bool:
    """asyncpg's client-side DataError is an InterfaceError too, but it is bad data (a value
    that cannot be encoded), and a ValueError: never an outage."""
    return isinstance(err, OUTAGE_TYPES) and not isinstance(err, ValueError)


async def outlasting_outages(
    act: Callable[[], Awaitable[object]], retry_s: float
) -> Exception | None:
    """Runs ``act`` until it succeeds (None) or fails other than by an outage (that failure,
    to park); an outage is waited out and ``act`` run again."""
    while True:
        try:
            await act()
        except Exception as err:
            if not is_outage(err):
                return err
            log.warning("waiting_out_outage", error=repr(err))
            await asyncio.sleep(retry_s)
            continue
        return None

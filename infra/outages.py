"""Failures that mean Postgres or the broker is away for a while — a restart, a failover, the
network — as opposed to a bug or bad data. Consumers and loops wait and try again on these; on
anything else they park the event or stop, since trying again would fail the same way."""

from __future__ import annotations

import asyncpg

from infra.kafka import BrokerUnavailable

OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # the server shutting down or not yet accepting
    asyncpg.InterfaceError,  # a connection closed under the client
    asyncpg.TransactionRollbackError,  # a deadlock or serialization failure: try again
    OSError,
    TimeoutError,
    BrokerUnavailable,
)


def is_outage(err: BaseException) -> bool:
    """asyncpg's client-side DataError is an InterfaceError too, but it is bad data (a value
    that cannot be encoded), and a ValueError: never an outage."""
    return isinstance(err, OUTAGE_TYPES) and not isinstance(err, ValueError)

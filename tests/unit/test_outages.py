"""The one failure policy: what is waited out and what is parked."""

import asyncpg
import pytest

from infra.bus import BrokerUnavailable
from infra.outages import is_outage, outlasting_outages


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.InternalClientError("the server closed the connection"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError("connect call failed"),
        TimeoutError(),
        BrokerUnavailable("no broker"),
    ],
)
def test_outages_are_waited_out(err: BaseException) -> None:
    assert is_outage(err)


@pytest.mark.parametrize(
    "err",
    [
        asyncpg.UndefinedColumnError('column "sender_gateway" does not exist'),
        asyncpg.UndefinedTableError('relation "sims" does not exist'),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.DataError("invalid input for query argument $1"),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type uuid"),
        ValueError("bad data"),
        KeyError("iccid"),
        RuntimeError("a bug"),
    ],
)
def test_poison_is_not_an_outage(err: BaseException) -> None:
    assert not is_outage(err)


async def test_an_outage_is_outlasted_and_poison_returned() -> None:
    failures: list[Exception] = [
        asyncpg.UndefinedColumnError("no column"),
        asyncpg.CannotConnectNowError("starting up"),
    ]
    calls = 0

    async def act() -> None:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop()

    assert isinstance(await outlasting_outages(act, 0), asyncpg.UndefinedColumnError)
    assert calls == 2
    assert await outlasting_outages(act, 0) is None

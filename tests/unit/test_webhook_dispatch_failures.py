"""A delivery attempt that fails ends there, logged, and its worker goes on with the line; a
cancel (the dispatcher stopping) is never swallowed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import structlog

from consumers.webhooks.dispatch import _failures_logged


def test_a_crash_is_logged_with_its_traceback_and_goes_no_further() -> None:
    with structlog.testing.capture_logs() as logs, _failures_logged("ep-1"):
        raise ValueError("a bug")

    [entry] = logs
    assert (entry["event"], entry["log_level"], entry["endpoint_id"]) == (
        "webhook_delivery_crashed",
        "error",
        "ep-1",
    )
    assert isinstance(entry["exc_info"], ValueError)


def test_an_outage_is_a_warning_without_a_traceback() -> None:
    with structlog.testing.capture_logs() as logs, _failures_logged("ep-1"):
        raise asyncpg.exceptions.ConnectionDoesNotExistError("gone")

    [entry] = logs
    assert (entry["event"], entry["log_level"]) == ("webhook_delivery_interrupted", "warning")
    assert "exc_info" not in entry


def test_a_cancel_passes_and_nothing_is_logged() -> None:
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(asyncio.CancelledError),
        _failures_logged("ep-1"),
    ):
        raise asyncio.CancelledError
    assert logs == []

"""The runtime's own components, started in the test's process against the session's broker and
Postgres — the same composition root ``simfleet run`` uses (``simfleet.app.running``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from infra.settings import Settings
from simfleet.app import Component, Runtime, prepare
from simfleet.app import running as run_components
from simfleet.components import components_by_role
from simfleet.endpoints import Endpoints


def components(*roles: str) -> list[Component]:
    return [c for role in roles for c in components_by_role(role)]


@contextlib.asynccontextmanager
async def running(
    settings: Settings, kafka_bootstrap: str, database_url: str, parts: Sequence[Component]
) -> AsyncIterator[Runtime]:
    endpoints = Endpoints(kafka_bootstrap, database_url)
    await prepare(settings, endpoints)
    async with run_components(settings, endpoints, parts, announce=lambda _line: None) as rt:
        yield rt

"""Handler dependencies, resolved from FastStream's context (filled by the composition root)."""

from __future__ import annotations

from typing import Annotated

import asyncpg

from infra.bus import Bus
from infra.clock import Clock
from infra.context import LoopContext
from infra.helix.client import HelixClient
from infra.settings import Settings

BusDep = Annotated[Bus, LoopContext("bus")]
PoolDep = Annotated[asyncpg.Pool, LoopContext("pool")]
ClockDep = Annotated[Clock, LoopContext("clock")]
SettingsDep = Annotated[Settings, LoopContext("settings")]
HelixDep = Annotated[HelixClient, LoopContext("helix")]

"""Many Skyline gateways, each its own host and credentials: a ``SkylineClient`` per gateway.

A gateway is found by its id (the MAC it pushes with, or the ``gateway_id`` in its push URL):
first in ``SK_GATEWAYS`` (host, port, its own username and password), else at the address its
pushes came from (``gateways.host``, learnt by the gateways projection; port ``SK_PORT``,
credentials ``SK_USERNAME``/``SK_PASSWORD``). ``SK_HOST`` serves only SIMs whose gateway nobody
named (a port from the import sheet without a gateway): an SMS never leaves through another
gateway's port of the same name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import httpx
from pydantic import SecretStr

from infra.context import LoopContext
from infra.retry import RetryPolicy
from infra.settings import SkylineSettings
from infra.skyline import SkylineClient, SkylineRejected, TaskStatus

UNNAMED = frozenset({"", "unknown"})  # what the bridge calls a push that named no gateway
LEARNT_HOST = "SELECT host FROM gateways WHERE gateway_id = $1 AND host IS NOT NULL"


def gateway_key(gateway_id: str) -> str:
    """``00:30:F1:01:02:03`` and ``00-30-f1-01-02-03`` are one gateway."""
    digits = re.sub(r"[-:.]", "", gateway_id.strip())
    if re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        return "-".join(digits[i : i + 2] for i in range(0, 12, 2)).lower()
    return gateway_id.strip()


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    username: str
    password: SecretStr

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"http://{host}:{self.port}"


class GatewayClients:
    def __init__(
        self,
        settings: SkylineSettings,
        pool: asyncpg.Pool | None,
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._settings, self._pool, self._policy = settings, pool, policy
        self._configured = {gateway_key(g.id): g for g in settings.gateways}
        self._clients: dict[Address, tuple[httpx.AsyncClient, SkylineClient]] = {}

    async def address_of(self, gateway_id: str | None) -> Address | None:
        s = self._settings
        key = gateway_key(gateway_id or "")
        if key in UNNAMED:
            if s.host is None:
                return None
            return Address(s.host, s.port, s.username, s.password)
        if (known := self._configured.get(key)) is not None:
            username = s.username if known.username is None else known.username
            return Address(known.host, known.port, username, known.password or s.password)
        host = await self._pool.fetchval(LEARNT_HOST, key) if self._pool is not None else None
        return Address(host, s.port, s.username, s.password) if host else None

    async def client_for(self, gateway_id: str | None) -> SkylineClient | None:
        address = await self.address_of(gateway_id)
        if address is None:
            return None
        if address not in self._clients:
            http = httpx.AsyncClient(base_url=address.base_url, timeout=self._settings.timeout_s)
            settings = self._settings.model_copy(
                update={
                    "host": address.host,
                    "port": address.port,
                    "username": address.username,
                    "password": address.password,
                }
            )
            self._clients[address] = (http, SkylineClient(http, settings, policy=self._policy))
        return self._clients[address][1]

    async def send_sms(
        self, gateway_id: str | None, port: str, to: str, text: str, *, tid: int
    ) -> TaskStatus:
        """Queues ``text`` on the gateway that holds ``port``; refused when it is unknown."""
        client = await self.client_for(gateway_id)
        if client is None:
            raise SkylineRejected(f"gateway {gateway_id!r} has no known address")
        return await client.send_sms(port, to, text, tid=tid)

    async def aclose(self) -> None:
        for http, _client in self._clients.values():
            await http.aclose()
        self._clients.clear()


SkylineDep = Annotated[GatewayClients, LoopContext("skyline")]

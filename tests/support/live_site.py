"""simfleet running whole in the test's process, composed as ``simfleet run`` composes it
(``simfleet.components`` + ``simfleet.app.running``), for tests that drive it only from outside.

Running: the projector (every read table), the gateway bridge, the carrier workers — activation,
finalizer, rotation, verification — on the Helix and Skyline sandboxes sharing one ``HelixWorld``,
the webhook worker, and the dashboard; plus a sandbox reseller receiver for the webhooks. Left
out: the scheduler (nothing here waits on the clock), canceller, number sync and the demo.

Webhooks have no retries here (empty delay schedules): an endpoint's first failed answer is final,
so a test sees a failed delivery at once and resends it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from cryptography.fernet import Fernet
from pydantic import SecretStr

from infra.http import free_port, serve_http
from infra.settings import (
    HelixSettings,
    RotationSettings,
    SecretsSettings,
    Settings,
    WebhookSettings,
)
from sandbox.gateways import GatewayNetwork
from sandbox.helix_world import HelixWorld
from sandbox.reseller import ReceiverState, create_reseller_receiver
from simfleet.app import Runtime, prepare, running
from simfleet.components import registered_components
from simfleet.endpoints import Endpoints
from tests.support.fleet import CLIENT_ID, GRANT_PASSWORD, USERNAME

LIVE_COMPONENTS = (
    "projector",
    "bridge",
    "provisioning",
    "verification",
    "rotation",
    "webhooks",
    "dashboard",
)
GATEWAY_SECRET = "gw-secret-live-5e2a"


@dataclass
class LiveSite:
    url: str  # the dashboard's
    runtime: Runtime
    network: GatewayNetwork
    receiver: ReceiverState
    receiver_url: str

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool

    @property
    def carrier(self) -> HelixWorld:
        return self.network.ports.carrier

    def carrier_number(self, iccid: str) -> str:
        """The SIM's number at the carrier now, as simfleet writes it (E.164)."""
        line = self.carrier.subscriber_by_iccid(iccid)
        assert line is not None, f"no line at the carrier for {iccid}"
        assert line.phone_number, f"no number yet for {iccid}"
        return f"+1{line.phone_number}"

    def hook_url(self, endpoint_id: str) -> str:
        return f"{self.receiver_url}/hooks/{endpoint_id}"


def live_settings(base: Settings, *, dashboard_auth: str) -> Settings:
    """``base`` (topics, database) with the sandboxes' credentials, fixed free ports (the sandbox
    gateways must know the bridge's address before it listens) and compressed schedules."""
    return base.model_copy(
        update={
            "bridge_port": free_port(),
            "dashboard_port": free_port(),
            "helix": HelixSettings(
                client_id=CLIENT_ID,
                audience="https://hx.example/api",
                grant_username=USERNAME,
                grant_password=SecretStr(GRANT_PASSWORD),
                activation_client_id=230,
                plan_id=985,
                ban="BAN-1",
                fan="FAN-1",
                timeout_s=5.0,
                rate_limit_per_s=1000.0,
                number_wait_s=5.0,
                number_poll_s=0.1,
            ),
            "secrets": SecretsSettings(
                gateway_secret=SecretStr(GATEWAY_SECRET), dashboard_auth=SecretStr(dashboard_auth)
            ),
            "webhooks": WebhookSettings(
                allow_http=True,
                allow_private=True,
                timeout_s=2.0,
                fast_delays_s=(),
                retry_delays_s=(),
                endpoint_cache_s=0.0,
                sweep_interval_s=0.5,
                sealing_key=SecretStr(Fernet.generate_key().decode()),
            ),
            "rotation": RotationSettings(min_number_age_s=0.0),
        }
    )


@contextlib.asynccontextmanager
async def live_site(settings: Settings, endpoints: Endpoints) -> AsyncIterator[LiveSite]:
    """The components of ``LIVE_COMPONENTS`` running until the block ends; fails the block's
    owner if one of their background loops died meanwhile."""
    components = [c for c in registered_components() if c.name in LIVE_COMPONENTS]
    assert {c.name for c in components} == set(LIVE_COMPONENTS)
    await prepare(settings, endpoints)
    app, receiver = create_reseller_receiver()
    async with (
        serve_http(app) as receiver_url,
        running(settings, endpoints, components, announce=lambda _line: None) as rt,
    ):
        network = rt.gateway_network
        assert network is not None
        url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
        yield LiveSite(url, rt, network, receiver, receiver_url)
        assert not rt.stop.is_set(), "a component stopped unexpectedly (see the log)"

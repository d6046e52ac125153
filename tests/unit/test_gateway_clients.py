"""Which gateway a send goes to: the listed address, else the learnt one, never SK_HOST for a
named gateway."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from infra.gateway_clients import Address, GatewayClients, gateway_key
from infra.settings import GatewayAddress, Settings, SkylineSettings

LISTED = GatewayAddress(
    id="00:30:F1:0A:00:01", host="10.0.0.5", port=8080, password=SecretStr("own-Pass-1")
)


async def test_a_listed_gateway_is_reached_at_its_own_address_with_its_own_password() -> None:
    settings = SkylineSettings(
        host="10.9.9.9", username="ops", password=SecretStr("shared-Pass"), gateways=(LISTED,)
    )
    clients = GatewayClients(settings, None)
    assert await clients.address_of("00-30-f1-0a-00-01") == Address(
        "10.0.0.5", 8080, "ops", SecretStr("own-Pass-1")
    )
    # a gateway nobody listed and nobody learnt is not reached through SK_HOST
    assert await clients.address_of("00-30-f1-0a-00-02") is None
    # SK_HOST serves SIMs whose gateway nobody named (a port from the import sheet)
    assert await clients.address_of(None) == Address(
        "10.9.9.9", 80, "ops", SecretStr("shared-Pass")
    )
    assert await clients.address_of("unknown") == await clients.address_of(None)
    assert (await clients.client_for("00-30-f1-0a-00-02")) is None
    await clients.aclose()


def test_gateways_are_configured_as_a_json_list_and_their_passwords_are_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = [{"id": "00-30-f1-0a-00-01", "host": "10.0.0.5", "password": "own-Pass-1"}]
    monkeypatch.setenv("SK_GATEWAYS", json.dumps(listed))
    settings = Settings()
    (gateway,) = settings.skyline.gateways
    assert (gateway.id, gateway.host, gateway.port) == ("00-30-f1-0a-00-01", "10.0.0.5", 80)
    assert settings.skyline.configured
    assert settings.secret_values()["SK_GATEWAYS[00-30-f1-0a-00-01]"] == "own-Pass-1"
    assert "own-Pass-1" not in repr(settings)


def test_one_gateway_whatever_the_spelling_of_its_mac() -> None:
    assert gateway_key("00:30:F1:0A:00:01") == gateway_key("00-30-f1-0a-00-01")
    assert gateway_key(" gw-north ") == "gw-north"

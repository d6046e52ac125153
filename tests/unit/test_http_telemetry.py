"""The HTTP servers on the hot path do not pay for OpenTelemetry nobody configured: FastAPI's
native telemetry asks the global providers on every request unless it is switched off."""

from __future__ import annotations

from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import _logs, metrics, trace
from pydantic import SecretStr

from infra.bus import Bus
from infra.clock import SystemClock
from infra.ops import ops_app
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import create_bridge_app


@pytest.fixture
def provider_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    for module, name in (
        (trace, "get_tracer_provider"),
        (metrics, "get_meter_provider"),
        (_logs, "get_logger_provider"),
    ):
        original = getattr(module, name)

        def counted(*args: object, _name: str = name, _original: object = original) -> object:
            asked.append(_name)
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(module, name, counted)
    return asked


async def _ready() -> bool:
    return True


def _apps() -> dict[str, FastAPI]:
    settings = Settings(secrets=SecretsSettings(gateway_secret=SecretStr("s" * 32)))
    return {
        "bridge": create_bridge_app(settings, cast(Bus, None), SystemClock()),
        "ops": ops_app({"ready": _ready}),
    }


@pytest.mark.parametrize("name", ["bridge", "ops"])
def test_requests_never_ask_opentelemetry(name: str, provider_lookups: list[str]) -> None:
    with TestClient(_apps()[name]) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
    assert provider_lookups == []


def test_the_default_would_ask_on_every_request(provider_lookups: list[str]) -> None:
    app = FastAPI()
    app.add_api_route("/healthz", _ready)
    with TestClient(app) as client:
        client.get("/healthz")
        client.get("/healthz")
    assert len(provider_lookups) >= 2  # what NO_TELEMETRY saves: the lookups per request

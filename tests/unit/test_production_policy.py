"""Closed by default: nothing unsafe without an explicit choice, and production refuses it."""

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from infra.dev_secrets import with_development_defaults
from infra.settings import (
    HelixSettings,
    KafkaSettings,
    PostgresSettings,
    SecretsSettings,
    Settings,
    SkylineSettings,
    WebhookSettings,
)
from simfleet.cli import app
from simfleet.endpoints import resolve_endpoints

STRONG = "s" * 24
STRONG_ENV = {
    "SIMFLEET_ENV": "production",
    "GATEWAY_SECRET": STRONG,
    "DASHBOARD_AUTH": "ops:correct-horse-battery",
    "HX_GRANT_PASSWORD": "carrier-password",
    "HX_CLIENT_ID": "client",
    "SK_PASSWORD": "gateway-password",
    "WEBHOOK_SEALING_KEY": Fernet.generate_key().decode(),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no .env of the project
    for name in ("SIMFLEET_ENV", "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIMFLEET_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


def production(**changes: Any) -> Settings:
    secrets = {
        "gateway_secret": SecretStr(STRONG),
        "dashboard_auth": SecretStr(STRONG_ENV["DASHBOARD_AUTH"]),
        **changes.pop("secrets", {}),
    }
    return Settings(
        env="production",
        secrets=SecretsSettings(**secrets),
        helix=HelixSettings(grant_password=SecretStr("carrier-password"), client_id="client"),
        skyline=SkylineSettings(password=SecretStr("gateway-password")),
        webhooks=WebhookSettings(
            **{
                "sealing_key": SecretStr(STRONG_ENV["WEBHOOK_SEALING_KEY"]),
                **changes.pop("webhooks", {}),
            }
        ),
        **changes,
    )


def test_an_unset_environment_keeps_the_ssrf_guard(clean_env: pytest.MonkeyPatch) -> None:
    settings = with_development_defaults(Settings())
    assert settings.env == "development"
    assert not settings.webhooks.allow_http
    assert not settings.webhooks.allow_private
    # the generated secrets still come: nothing runs open either way
    assert settings.secrets.gateway_secret.get_secret_value()


def test_development_said_explicitly_lets_webhooks_reach_the_sandbox(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("SIMFLEET_ENV", "development")
    settings = with_development_defaults(Settings())
    assert settings.webhooks.allow_http
    assert settings.webhooks.allow_private


def test_a_strong_production_configuration_loads_with_run_actions_off() -> None:
    settings = production()
    assert settings.secrets.bulk_run_secret.get_secret_value() == ""


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"secrets": {"gateway_secret": SecretStr("12345")}}, "GATEWAY_SECRET"),
        ({"secrets": {"sync_secret": SecretStr("ab")}}, "SYNC_SECRET"),
        ({"secrets": {"dashboard_auth": SecretStr("admin:admin1")}}, "DASHBOARD_AUTH"),
        ({"secrets": {"dashboard_auth": SecretStr("operator-long-enough:")}}, "DASHBOARD_AUTH"),
        ({"secrets": {"dashboard_auth": SecretStr("x" * 20)}}, "DASHBOARD_AUTH"),
        ({"webhooks": {"sealing_key": SecretStr("k")}}, "WEBHOOK_SEALING_KEY"),
        ({"webhooks": {"allow_private": True}}, "WEBHOOK_ALLOW_PRIVATE"),
        ({"webhooks": {"allow_http": True}}, "WEBHOOK_ALLOW_HTTP"),
    ],
)
def test_production_refuses_weak_secrets_and_open_settings(
    changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named) as refused:
        production(**changes)
    for value in ("12345", "admin1", "operator-long-enough"):
        assert value not in str(refused.value).replace(named, "")


def test_production_refuses_a_one_character_sealing_key_among_good_ones() -> None:
    good = STRONG_ENV["WEBHOOK_SEALING_KEY"]
    with pytest.raises(ValidationError, match="WEBHOOK_SEALING_KEY"):
        production(webhooks={"sealing_key": SecretStr(f"{good},x")})


def test_production_never_starts_embedded_infrastructure(tmp_path: Path) -> None:
    settings = production(state_dir=tmp_path)
    with pytest.raises(RuntimeError, match="KAFKA_BOOTSTRAP_SERVERS"), resolve_endpoints(settings):
        pass
    assert not any(tmp_path.iterdir())  # no broker, no Postgres data dir


def test_production_runs_config_check_first_and_refuses_to_start(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in STRONG_ENV.items():
        clean_env.setenv(name, value)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert "refusing to start in production" in result.output
    for missing in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "HX_API_BASE", "SK_HOST"):
        assert missing in result.output
    assert STRONG not in result.output
    assert not (tmp_path / "state").exists()  # nothing embedded was started


def test_a_weak_production_secret_stops_the_start_with_one_clear_line(
    clean_env: pytest.MonkeyPatch,
) -> None:
    for name, value in {**STRONG_ENV, "GATEWAY_SECRET": "12345"}.items():
        clean_env.setenv(name, value)
    result = CliRunner().invoke(app, ["bridge"])
    assert result.exit_code == 2
    assert "GATEWAY_SECRET: shorter than 16 characters" in result.output
    assert "12345" not in result.output


def test_configured_production_passes_the_start_check(clean_env: pytest.MonkeyPatch) -> None:
    from infra.config_check import start_problems

    settings = production(
        kafka=KafkaSettings(kafka_bootstrap_servers="kafka:9092"),
        postgres=PostgresSettings(database_url=SecretStr("postgresql://db/simfleet")),
    )
    complete = settings.model_copy(
        update={
            "helix": settings.helix.model_copy(
                update={
                    "api_base": "https://hx.example",
                    "token_url": "https://auth.example/oauth/token",
                    "audience": "a",
                    "grant_username": "u",
                    "activation_client_id": 1,
                    "plan_id": 1,
                    **dict.fromkeys(("ban", "fan", "address1", "city", "state", "zip"), "x"),
                }
            ),
            "skyline": settings.skyline.model_copy(update={"host": "gw", "username": "u"}),
        }
    )
    assert start_problems(complete) == []
    assert start_problems(settings) == [
        "HX_API_BASE: unset: Helix sandbox",
        "SK_HOST: unset (and no SK_GATEWAYS): sandbox gateways",
    ]

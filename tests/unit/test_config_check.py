from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from infra.config_check import check
from infra.settings import HelixSettings, KafkaSettings, PostgresSettings, SecretsSettings, Settings
from simfleet.cli import app


def levels(settings: Settings) -> dict[str, str]:
    return {f.name: f.level for f in check(settings)}


def test_development_defaults_are_notes_not_errors(tmp_path: Path) -> None:
    found = levels(
        Settings(
            env="development",
            state_dir=tmp_path,
            secrets=SecretsSettings(
                gateway_secret=SecretStr("g" * 24), dashboard_auth=SecretStr("a:b")
            ),
        )
    )
    assert found["KAFKA_BOOTSTRAP_SERVERS"] == "note"
    assert found["HX_API_BASE"] == "note"
    assert "missing" not in found.values()


def test_a_configured_carrier_needs_its_credentials(tmp_path: Path) -> None:
    found = levels(
        Settings(
            env="development",
            state_dir=tmp_path,
            helix=HelixSettings(api_base="https://hx.example", client_id="c"),
        )
    )
    assert found["HX_CLIENT_ID"] == "ok"
    assert found["HX_GRANT_PASSWORD"] == "missing"
    assert found["HX_PLAN_ID"] == "missing"


def test_the_cli_names_what_is_missing_and_never_prints_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the project
    monkeypatch.setenv("HX_API_BASE", "https://hx.example")
    monkeypatch.setenv("HX_GRANT_PASSWORD", "very-secret-password")
    monkeypatch.setenv("GATEWAY_SECRET", "gateway-secret-value")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 1
    assert "HX_PLAN_ID" in result.output
    assert "very-secret-password" not in result.output
    assert "gateway-secret-value" not in result.output


def test_production_requires_real_infrastructure(tmp_path: Path) -> None:
    settings = Settings.model_construct(
        env="production",
        state_dir=tmp_path,
        kafka=KafkaSettings(),
        postgres=PostgresSettings(),
        helix=HelixSettings(),
        skyline=Settings().skyline,
        webhooks=Settings().webhooks,
        secrets=SecretsSettings(),
        rotation=Settings().rotation,
    )
    found = levels(settings)
    assert found["KAFKA_BOOTSTRAP_SERVERS"] == "missing"
    assert found["DATABASE_URL"] == "missing"
    assert found["HX_API_BASE"] == "missing"
    assert found["WEBHOOK_SEALING_KEY"] == "missing"

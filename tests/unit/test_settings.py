import pytest
from pydantic import SecretStr, ValidationError

from infra.logging import SecretMasker
from infra.redaction import REDACTED
from infra.settings import SecretsSettings, Settings, SilenceSettings


def test_reads_the_original_variables_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_SECRET", "gw-s3cret-value")
    monkeypatch.setenv("HX_GRANT_PASSWORD", "hx-pass-value")
    monkeypatch.setenv("HX_PLAN_ID", "985")
    monkeypatch.setenv("SK_HOST", "10.0.0.5")
    monkeypatch.setenv("TOPIC_PREFIX", "test.")
    monkeypatch.setenv("SHEET_CSV_URL", "https://sheet.example/export.csv")
    monkeypatch.setenv("KAFKA_PARTITIONS", '{"sms.inbound": 12}')
    settings = Settings()
    assert settings.secrets.gateway_secret.get_secret_value() == "gw-s3cret-value"
    assert settings.helix.plan_id == 985
    assert settings.skyline.host == "10.0.0.5"
    assert settings.kafka.topic_prefix == "test."
    assert settings.sheet_csv_url == "https://sheet.example/export.csv"
    assert settings.kafka.partitions_for("sms.inbound") == 12
    assert settings.kafka.partitions_for("sim.lifecycle", 6) == 6


def test_secrets_never_appear_in_dumps_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET", "gw-s3cret-value")
    monkeypatch.setenv("SK_PASSWORD", "sk-pass-value")
    settings = Settings()
    text = repr(settings) + settings.model_dump_json()
    assert "gw-s3cret-value" not in text
    assert "sk-pass-value" not in text


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="GATEWAY_SECRET"):
        Settings(env="production", secrets=SecretsSettings(gateway_secret=SecretStr("changeme")))


def test_masker_hides_configured_values_and_secret_named_keys() -> None:
    masker = SecretMasker(["hunter2-long"])
    line = masker(None, "info", {"event": "x", "url": "https://a/?p=hunter2-long", "password": "p"})
    assert line == {"event": "x", "url": f"https://a/?p={REDACTED}", "password": REDACTED}
    assert masker.mask({"nested": ["hunter2-long"]}) == {"nested": [REDACTED]}


def test_silence_threshold_per_reseller_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SILENCE_AFTER_S", "7200")
    monkeypatch.setenv("SILENCE_RESELLER_AFTER_S", '{"acme": 600}')
    silence = Settings().silence
    assert (silence.after_for("acme"), silence.after_for("other"), silence.after_for(None)) == (
        600.0,
        7200.0,
        7200.0,
    )
    monkeypatch.delenv("SILENCE_AFTER_S")
    assert SilenceSettings().after_s == 6 * 3600


def test_a_silence_override_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="acme"):
        SilenceSettings(reseller_after_s={"acme": 0})

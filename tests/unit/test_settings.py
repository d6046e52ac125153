import pytest
from pydantic import SecretStr, ValidationError

from infra.logging import SecretMasker
from infra.redaction import REDACTED
from infra.settings import (
    TANSU_MAX_PARTITIONS,
    KafkaSettings,
    SecretsSettings,
    Settings,
    SilenceSettings,
)
from simfleet.endpoints import suit_tansu


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


def test_the_partition_cap_bounds_the_topic_defaults_not_a_named_count() -> None:
    capped = KafkaSettings(kafka_max_partitions=1, kafka_partitions={"sms.inbound": 4})
    assert capped.partitions_for("sim.lifecycle", 6) == 1
    assert capped.partitions_for("gateway.rejected") == 1  # the default count, 6, capped
    assert capped.partitions_for("sms.inbound", 6) == 4  # named: taken as given
    assert KafkaSettings(kafka_max_partitions=3).partitions_for("sim.lifecycle", 2) == 2
    assert KafkaSettings().partitions_for("sim.lifecycle", 6) == 6


def test_the_embedded_tansu_gets_one_partition_a_topic_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_MAX_PARTITIONS", raising=False)
    kafka = KafkaSettings()
    suit_tansu(kafka)
    assert kafka.kafka_max_partitions == TANSU_MAX_PARTITIONS == 1
    assert kafka.partitions_for("sms.inbound", 6) == 1
    monkeypatch.setenv("KAFKA_MAX_PARTITIONS", "3")
    chosen = KafkaSettings()
    suit_tansu(chosen)
    assert chosen.kafka_max_partitions == 3


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

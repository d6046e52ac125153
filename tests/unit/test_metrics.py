import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra import metrics
from infra.dead_letters import DeadLetters
from infra.webhook_sender import Outcome

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def exposed() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The text exposition as Prometheus reads it (prometheus_client's parser): series name →
    labels → value."""
    series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            series.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return series


def test_error_counters_exist_at_zero_before_any_error() -> None:
    series = exposed()
    for status in ("400", "413", "422"):
        assert (("status", status),) in series["simfleet_pushes_rejected_total"]
    for outcome in ("rejected", "gone", "blocked", "retryable"):
        assert (("outcome", outcome),) in series["simfleet_webhook_attempts_total"]
    assert (("outcome", "failed"),) in series["simfleet_verifications_total"]
    helix = series["simfleet_helix_calls_total"]
    assert (("ok", "false"), ("operation", "activation")) in helix
    assert (("ok", "false"), ("operation", "cancel_subscription")) in helix


def test_a_consumer_has_its_failure_series_once_it_is_set_up() -> None:
    DeadLetters(bus=None, consumer="test.metrics-consumer")  # type: ignore[arg-type]
    series = exposed()
    assert series["simfleet_events_failed_total"][(("consumer", "test.metrics-consumer"),)] == 0


def test_the_label_vocabularies_are_the_codes_own() -> None:
    assert set(metrics.WEBHOOK_OUTCOMES) == {o.value for o in Outcome}


def test_every_metric_is_documented() -> None:
    documented = set(re.findall(r"`(simfleet_[a-z_]+)`", DOC.read_text()))
    defined = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("simfleet_")
    }
    assert defined == documented

"""On Tansu, which holds every fetch for its whole wait, a projection gathers its batch on the
broker (one fetch a window) instead of fetching every 20 ms and gathering after; explicit
settings are kept, and Apache Kafka keeps the common fetch wait."""

from infra.settings import TANSU_FETCH_WAIT_MS, KafkaSettings
from simfleet.endpoints import suit_tansu


def test_on_tansu_a_projection_waits_out_its_gather_window_on_the_broker() -> None:
    kafka = KafkaSettings(_env_file=None, kafka_projection_gather_ms=40)
    suit_tansu(kafka)
    assert kafka.kafka_idempotence is False
    assert kafka.kafka_fetch_wait_ms == TANSU_FETCH_WAIT_MS  # the webhook consumer's
    assert kafka.projection_fetch_wait_ms == 40
    assert kafka.kafka_projection_gather_ms == 0


def test_without_a_gather_window_a_projection_fetches_like_the_rest() -> None:
    kafka = KafkaSettings(_env_file=None, kafka_projection_gather_ms=0)
    suit_tansu(kafka)
    assert kafka.projection_fetch_wait_ms == TANSU_FETCH_WAIT_MS


def test_waits_set_by_the_operator_are_kept_on_tansu() -> None:
    kafka = KafkaSettings(
        _env_file=None,
        kafka_fetch_wait_ms=100,
        kafka_projection_fetch_wait_ms=30,
        kafka_projection_gather_ms=10,
    )
    suit_tansu(kafka)
    assert (kafka.kafka_fetch_wait_ms, kafka.projection_fetch_wait_ms) == (100, 30)
    assert kafka.kafka_projection_gather_ms == 10


def test_elsewhere_a_projection_fetches_with_the_common_wait() -> None:
    kafka = KafkaSettings(_env_file=None, kafka_fetch_wait_ms=300)
    assert kafka.projection_fetch_wait_ms == 300

"""KAFKA_SECURITY_* reach every Kafka client simfleet builds: the FastStream broker, the
projection consumers, the admin clients and the lag probe (and nothing builds one around it).

These check the wiring; tests/integration/test_kafka_sasl_ssl.py proves it live against
Apache Kafka with a SASL_SSL listener."""

import ast
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from infra import kafka_lag, kafka_topics
from infra.kafka import build_broker, ensure_topics
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "infra", "producers", "consumers", "projections", "dashboard", "sandbox", "events", "policies",
    "simfleet",
)  # fmt: skip
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}
# the embedded brokers' own readiness probes (PLAINTEXT on loopback, the broker just started)
# and the AsyncAPI renderer (never connects)
EXEMPT = {"infra/embedded/tansu.py", "infra/embedded/apache_kafka.py", "infra/asyncapi.py"}
BROKERS = {"KafkaBroker", "ConcurrentStartBroker"}


def ca_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def secured(tmp_path: Path) -> KafkaSettings:
    return KafkaSettings(
        kafka_bootstrap_servers="kafka.example:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="simfleet",
        kafka_sasl_password=SecretStr("kafka-password"),
        kafka_ssl_cafile=ca_file(tmp_path),
    )


def assert_secured(options: dict[str, Any]) -> None:
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "simfleet"
    assert options["sasl_plain_password"] == "kafka-password"
    assert options["ssl_context"] is not None


class Built(Exception):
    """Raised by a recording stand-in once a client was constructed: the call is all we need."""


def recording(seen: list[dict[str, Any]], *, stop: bool) -> Any:
    def construct(*_args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        if stop:
            raise Built
        return object()

    return construct


def test_plaintext_adds_nothing() -> None:
    assert client_options(KafkaSettings()) == {}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_sasl_mechanism_maps_to_aiokafka(mechanism: str) -> None:
    options = client_options(
        KafkaSettings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="u",
            kafka_sasl_password=SecretStr("p"),
        )
    )
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_MECHANISM"):
        KafkaSettings(kafka_security_protocol="SASL_SSL")


def test_the_broker_gets_the_security_settings(secured: KafkaSettings) -> None:
    broker = build_broker(secured, "kafka.example:9093")
    assert_secured(broker._connection_kwargs)  # what FastStream hands to aiokafka on connect


async def test_projection_consumers_get_them(secured: KafkaSettings) -> None:
    from infra.dead_letters import DeadLetters
    from projections.registry import all_projections
    from projections.runner import ProjectionRunner

    name, projection = next(iter(all_projections().items()))
    runner = ProjectionRunner(
        projection,
        bootstrap="kafka.example:9093",
        kafka=secured,
        pool=None,
        dead_letters=DeadLetters(None, name),  # type: ignore[arg-type]
    )
    client = runner._consumer._client
    try:
        assert (client._security_protocol, client._sasl_mechanism) == (
            "SASL_SSL",
            "SCRAM-SHA-512",
        )
        assert (client._sasl_plain_username, client._sasl_plain_password) == (
            "simfleet",
            "kafka-password",
        )
        assert client._ssl_context is not None
    finally:
        await runner._consumer.stop()  # made, never started: closed all the same


async def test_topic_creation_and_the_lag_probe_get_them(
    secured: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    admins: list[dict[str, Any]] = []
    monkeypatch.setattr(kafka_topics, "AIOKafkaAdminClient", recording(admins, stop=True))
    with pytest.raises(Built):
        await ensure_topics("kafka.example:9093", secured)

    lag_clients: list[dict[str, Any]] = []
    monkeypatch.setattr(kafka_lag, "AIOKafkaAdminClient", recording(lag_clients, stop=False))
    monkeypatch.setattr(kafka_lag, "AIOKafkaConsumer", recording(lag_clients, stop=True))
    with pytest.raises(Built):
        await kafka_lag.group_lags("kafka.example:9093", secured)

    assert len(admins) == 1
    assert len(lag_clients) == 2
    for options in (*admins, *lag_clients):
        assert_secured(options)


def constructions(path: Path) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in CLIENTS or name in BROKERS:
                found.append((str(name), node))
    return found


def test_no_kafka_client_is_built_without_the_security_settings() -> None:
    """A new AIOKafka*/KafkaBroker construction must pass them (or be listed as exempt)."""
    unsecured, seen = [], 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            for name, call in constructions(path):
                seen += 1
                keywords = {k.arg for k in call.keywords}
                splats = [k.value for k in call.keywords if k.arg is None]
                ok = "security" in keywords if name in BROKERS else bool(splats)
                if not ok and where not in EXEMPT:
                    unsecured.append(f"{where}:{call.lineno} {name}")
    assert seen >= 5  # the scan does see the constructions
    assert unsecured == []

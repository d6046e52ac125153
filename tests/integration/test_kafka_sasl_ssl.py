"""KAFKA_SECURITY_* proven live: Apache Kafka with a SASL_SSL listener (SCRAM-SHA-512, mutual TLS,
certificates from a CA this test generates) serves simfleet's own clients — topic creation, the
bus, a consumer — and refuses a wrong password, a client that does not trust its CA, a client
without its certificate and a PLAINTEXT client. One broker for the module; every refusal is
bounded by a time-out."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from faststream.kafka import KafkaRouter
from pydantic import SecretStr

from events import Event
from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.embedded.apache_kafka import KafkaCluster
from infra.embedded.kafka_nodes import ExtraListener
from infra.kafka import build_broker, consume, ensure_topics
from infra.settings import KafkaSettings

pytestmark = pytest.mark.integration

TEST_TMP = Path(__file__).resolve().parents[2] / ".simfleet" / "test-tmp"
USER = "simfleet"
MECHANISM = "SCRAM-SHA-512"
# a refusal must come well within this; a client that hangs instead fails the test
REFUSAL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Certificates:
    cafile: Path  # the CA: the broker's and the clients' trust
    broker_keystore: Path  # the broker's key + chain in one PEM file (Kafka's PEM keystore)
    client_certfile: Path  # the client's certificate, for mutual TLS
    client_keyfile: Path


@dataclass(frozen=True)
class SecuredKafka:
    bootstrap: str  # the SASL_SSL listener
    password: str
    certificates: Certificates


CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Kafka's PEM keystore reads unencrypted keys only in PKCS#8 form
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write_certificates(directory: Path) -> Certificates:
    """A CA, the broker's certificate (valid for 127.0.0.1 and localhost) and a client's."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("simfleet test CA"))
        .issuer_name(_name("simfleet test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    broker_key, broker_cert = _issue(
        ca_key, ca_cert, "kafka-broker", ExtendedKeyUsageOID.SERVER_AUTH, loopback
    )
    client_key, client_cert = _issue(
        ca_key, ca_cert, "simfleet", ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    certificates = Certificates(
        cafile=directory / "ca.pem",
        broker_keystore=directory / "broker-keystore.pem",
        client_certfile=directory / "client.pem",
        client_keyfile=directory / "client-key.pem",
    )
    certificates.cafile.write_bytes(_pem(ca_cert))
    certificates.broker_keystore.write_bytes(_pkcs8(broker_key) + _pem(broker_cert) + _pem(ca_cert))
    certificates.client_certfile.write_bytes(_pem(client_cert))
    certificates.client_keyfile.write_bytes(_pkcs8(client_key))
    certificates.broker_keystore.chmod(0o600)
    certificates.client_keyfile.chmod(0o600)
    return certificates


def sasl_ssl_listener(certificates: Certificates, password: str) -> ExtraListener:
    prefix = "listener.name.secure."
    return ExtraListener(
        name="SECURE",
        protocol="SASL_SSL",
        config={
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certificates.broker_keystore),
            # mutual TLS on top of SASL: a client must also show a certificate from the CA (on a
            # SASL_SSL listener Kafka reads this only with the listener prefix, KIP-684)
            f"{prefix}ssl.client.auth": "required",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certificates.cafile),
            f"{prefix}sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}{MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        },
        # the SCRAM credential goes into the cluster's bootstrap metadata at format time
        format_args=("--add-scram", f"{MECHANISM}=[name={USER},password={password}]"),
    )


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[SecuredKafka]:
    TEST_TMP.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="sasl-ssl-kafka-", dir=TEST_TMP))
    password = secrets.token_urlsafe(18)
    certificates = write_certificates(state_dir)
    cluster = KafkaCluster(
        state_dir, brokers=1, extra_listener=sasl_ssl_listener(certificates, password)
    )
    cluster.start()
    try:
        yield SecuredKafka(cluster.extra_bootstrap, password, certificates)
    finally:
        cluster.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def client_settings(kafka: SecuredKafka, prefix: str, **overrides: object) -> KafkaSettings:
    fields: dict[str, object] = {
        "kafka_bootstrap_servers": kafka.bootstrap,
        "topic_prefix": prefix,
        "kafka_default_partitions": 1,
        "kafka_idempotence": True,
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 400,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": MECHANISM,
        "kafka_sasl_username": USER,
        "kafka_sasl_password": SecretStr(kafka.password),
        "kafka_ssl_cafile": kafka.certificates.cafile,
        "kafka_ssl_certfile": kafka.certificates.client_certfile,
        "kafka_ssl_keyfile": kafka.certificates.client_keyfile,
        **overrides,
    }
    return KafkaSettings(**fields)  # type: ignore[arg-type]


def prefix() -> str:
    return f"s{uuid.uuid4().hex[:10]}."


def sms() -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test",
        time=dt.datetime.now(dt.UTC),
        gateway_id="gw-secure",
        port="1.01",
        sender="+15551230000",
        to="5559870000",
        body="over SASL_SSL",
        received_at=dt.datetime(2026, 2, 4, 12, tzinfo=dt.UTC),
    )


async def publish(kafka: KafkaSettings, bootstrap: str) -> None:
    broker = build_broker(kafka, bootstrap)
    async with broker:
        await broker.start()
        await Bus(broker, kafka.topic_prefix).emit(sms())


async def test_topics_bus_and_consumer_work_over_sasl_ssl_with_scram(
    secured_kafka: SecuredKafka,
) -> None:
    kafka = client_settings(secured_kafka, prefix())
    created = await asyncio.wait_for(
        ensure_topics(secured_kafka.bootstrap, kafka, [SMS_INBOUND]), REFUSAL_TIMEOUT_S
    )
    assert created == [SMS_INBOUND.full_name(kafka.topic_prefix)]

    received: asyncio.Queue[Event] = asyncio.Queue()
    router = KafkaRouter()

    @consume(router, kafka, SMS_INBOUND, "sasl-ssl-test")
    async def on_sms(event: Event) -> None:
        await received.put(event)

    broker = build_broker(kafka, secured_kafka.bootstrap)
    broker.include_router(router)
    event = sms()
    async with broker:
        await broker.start()
        await Bus(broker, kafka.topic_prefix).emit(event)
        got = await asyncio.wait_for(received.get(), 30)
    assert got == event


async def test_a_wrong_password_fails_authentication(
    secured_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = client_settings(
        secured_kafka, prefix(), kafka_sasl_password=SecretStr("not-the-password")
    )
    # aiokafka logs why each bootstrap address failed and raises a connection error
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(secured_kafka.bootstrap, kafka, [SMS_INBOUND]), REFUSAL_TIMEOUT_S
        )
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials" in caplog.text
    assert "not-the-password" not in caplog.text
    caplog.clear()

    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(publish(kafka, secured_kafka.bootstrap), REFUSAL_TIMEOUT_S)
    assert "SaslAuthenticationFailed" in caplog.text
    assert "not-the-password" not in caplog.text


async def test_a_client_without_the_ca_cannot_connect(
    secured_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
) -> None:
    # the system's CAs only: the broker's certificate is from a CA nobody else trusts
    kafka = client_settings(secured_kafka, prefix(), kafka_ssl_cafile=None)
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(secured_kafka.bootstrap, kafka, [SMS_INBOUND]), REFUSAL_TIMEOUT_S
        )
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


async def test_a_client_without_its_certificate_is_refused(
    secured_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = client_settings(
        secured_kafka, prefix(), kafka_ssl_certfile=None, kafka_ssl_keyfile=None
    )
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(secured_kafka.bootstrap, kafka, [SMS_INBOUND]), REFUSAL_TIMEOUT_S
        )
    # TLS 1.3: the broker checks the client's certificate after its own handshake and drops the
    # connection; the first test's client differs from this one only by its certificate
    assert "closed" in caplog.text


async def test_a_plaintext_client_cannot_connect(
    secured_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = client_settings(
        secured_kafka,
        prefix(),
        kafka_security_protocol="PLAINTEXT",
        kafka_sasl_mechanism=None,
        kafka_sasl_username="",
        kafka_sasl_password=SecretStr(""),
        kafka_ssl_cafile=None,
        kafka_ssl_certfile=None,
        kafka_ssl_keyfile=None,
    )
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(secured_kafka.bootstrap, kafka, [SMS_INBOUND]), REFUSAL_TIMEOUT_S
        )
    # the TLS listener drops what is not a TLS handshake: no answer to the client's first request
    assert "closed" in caplog.text

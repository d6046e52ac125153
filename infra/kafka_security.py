"""How every Kafka client authenticates and encrypts: one place, from ``KAFKA_SECURITY_*``.

``broker_security`` is FastStream's security object for ``KafkaBroker`` (the consumers' and
the bus's producer); ``client_options`` is the same turned into aiokafka keyword arguments by
FastStream's own mapping, for the clients built directly (projection consumers, admin clients,
the lag probe). So the broker and the bare clients can never disagree.

The embedded development broker speaks PLAINTEXT on loopback and is probed by its own module;
everything that talks to a configured cluster goes through here.
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from infra.settings import KafkaSettings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    # verifies the broker's certificate and host name against the CA file, or the system's CAs
    context = ssl.create_default_context(
        cafile=str(kafka.kafka_ssl_cafile) if kafka.kafka_ssl_cafile else None
    )
    if kafka.kafka_ssl_certfile:  # mutual TLS: the client's own certificate
        context.load_cert_chain(
            str(kafka.kafka_ssl_certfile),
            str(kafka.kafka_ssl_keyfile) if kafka.kafka_ssl_keyfile else None,
        )
    return context


def broker_security(kafka: KafkaSettings) -> BaseSecurity | None:
    protocol = kafka.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol in ("SSL", "SASL_SSL")
    context = _ssl_context(kafka) if tls else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    mechanism = _SASL[kafka.kafka_sasl_mechanism or "PLAIN"]
    return mechanism(
        kafka.kafka_sasl_username,
        kafka.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=tls,
    )


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer`` / ``AIOKafkaProducer`` / ``AIOKafkaAdminClient``."""
    options = parse_security(broker_security(kafka))
    if options.get("ssl_context") is None:
        options.pop("ssl_context", None)
    return options

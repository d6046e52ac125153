"""Typed configuration: every variable simfleet reads, grouped by the system it configures.

Built once in the composition root (``Settings()``) and passed down; tests construct it directly.
Unset infrastructure (Kafka, Postgres, Helix, Skyline) means "start the embedded/sandbox one".
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.production_policy import production_problems


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )


# Tansu holds a waiting fetch for its whole wait even once a record arrived (Apache Kafka answers
# it then), so on Tansu a consumer that someone waits on fetches often instead
TANSU_FETCH_WAIT_MS = 20
# Tansu (0.6, memory storage) lists every batch ever stored in a partition for each partition
# of a fetch that has records to return: its CPU per fetch grows with all the topic ever held,
# and a produce round spread over six partitions stores six one-record batches where one
# partition stores one. A single node with nothing to spread gains nothing from more.
TANSU_MAX_PARTITIONS = 1


class KafkaSettings(BaseSettings):
    model_config = _config()

    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; unset starts the embedded broker"
    )
    embedded_broker: Literal["auto", "kafka", "tansu"] = Field(
        default="auto",
        description="embedded broker: auto = Apache Kafka where Java and its jars are, else Tansu",
    )
    topic_prefix: str = Field(default="", description="environment prefix for every topic")
    kafka_default_partitions: int = Field(default=6, ge=1, le=1024)
    kafka_partitions: dict[str, int] = Field(
        default_factory=dict, description='per-topic override, JSON: {"sms.inbound": 12}'
    )
    kafka_max_partitions: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="caps the partitions of a topic not named in KAFKA_PARTITIONS (1 with the "
        "embedded Tansu, whose fetches cost more with every batch a partition holds)",
    )
    kafka_replication_factor: int | None = Field(
        default=None, ge=1, description="unset: min(3, brokers in the cluster)"
    )
    kafka_min_insync_replicas: int | None = Field(
        default=None, ge=1, description="unset: replication factor - 1, at least 1"
    )
    kafka_default_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000, ge=-1, description="topic retention; -1 = forever"
    )
    kafka_retention_ms: dict[str, int] = Field(
        default_factory=dict,
        description='per-topic retention, JSON: {"helix.calls": 86400000} (reseller.registry: -1)',
    )
    kafka_idempotence: bool = Field(
        default=True,
        description="idempotent producer; false only for a broker without it (Tansu)",
    )
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=2_000, ge=100)
    kafka_fetch_wait_ms: int = Field(
        default=500,
        ge=1,
        le=30_000,
        description="how long a fetch of the webhook consumer (or of a projection that does not "
        "gather) idles on the broker with nothing to read; Apache Kafka answers it as soon as a "
        "record arrives, Tansu waits it out (20 there, set with the embedded Tansu)",
    )
    kafka_projection_gather_ms: int = Field(
        default=80,
        ge=0,
        le=5_000,
        description="a live projection's fetch waits on the broker until this long passed or "
        "256 KiB arrived, and the batch goes in one transaction; 0 = each record at once",
    )
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="for every producer, consumer and admin client"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="with SSL/SASL_SSL: CA bundle (PEM); unset = system CAs"
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="client certificate (PEM), for mutual TLS"
    )
    kafka_ssl_keyfile: Path | None = Field(default=None, description="its private key (PEM)")

    @model_validator(mode="after")
    def _complete_security(self) -> KafkaSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (
            self.kafka_sasl_mechanism
            and self.kafka_sasl_username
            and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE without KAFKA_SSL_CERTFILE")
        return self

    def partitions_for(self, topic: str, default: int | None = None) -> int:
        """``topic``'s partitions: its KAFKA_PARTITIONS entry as given, else ``default`` (the
        topic's own count) or the default count, capped by ``kafka_max_partitions``."""
        if topic in self.kafka_partitions:
            return self.kafka_partitions[topic]
        wanted = default or self.kafka_default_partitions
        return min(wanted, self.kafka_max_partitions or wanted)


class PostgresSettings(BaseSettings):
    model_config = _config()

    database_url: SecretStr | None = Field(
        default=None, description="postgresql://…; unset starts the embedded Postgres"
    )
    database_pool_min: int = Field(default=1, ge=0)
    database_pool_max: int = Field(default=10, ge=1)


class HelixSettings(BaseSettings):
    """HX-AX wholesale API (T-Mobile); unset HX_API_BASE means the Helix sandbox."""

    model_config = _config("HX_")

    api_base: str | None = None
    token_url: str | None = None
    client_id: str = ""
    audience: str = ""
    grant_username: str = ""
    grant_password: SecretStr = SecretStr("")
    activation_client_id: int = 0
    plan_id: int = 0
    ban: str = ""
    fan: str = ""
    address1: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    rate_limit_per_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(
        default=8,
        ge=1,
        description="carrier calls in flight at once (the provisioning group works on every SIM "
        "of a batch at once, each SIM's events in order)",
    )
    number_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="how long the finalizer re-reads a new line's details for its number before "
        "leaving it to the sweep (the partition waits meanwhile: keep it short)",
    )
    number_poll_s: float = Field(
        default=0.5, gt=0, description="first pause between those re-reads (then doubling)"
    )
    finalize_sweep_s: float = Field(
        default=300.0, gt=0, description="how often lines still without a number are re-read"
    )
    sync_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="how often active, suspended and error SIMs are compared with the carrier",
    )
    request_retry_delay_s: float = Field(
        default=300.0,
        gt=0,
        description="first wait before an activation, cancel, suspend or restore that failed "
        "retryably is sent again (doubling)",
    )
    request_max_attempts: int = Field(
        default=5,
        ge=1,
        description="attempts of such a request before the SIM is shown as needing an operator",
    )
    request_stale_s: float = Field(
        default=3600.0,
        gt=0,
        description="an activation request without an outcome this long no longer blocks another",
    )


class GatewayAddress(BaseModel):
    """One Skyline gateway: its id (the MAC it pushes with, or the ``gateway_id`` in its push
    URL), where its HTTP API answers, and its own credentials (unset: SK_USERNAME/SK_PASSWORD)."""

    id: str = Field(min_length=1)
    host: str = Field(min_length=1)
    port: int = Field(default=80, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None


class SkylineSettings(BaseSettings):
    """Skyline SMS gateways; unset SK_HOST and SK_GATEWAYS mean the sandbox gateways."""

    model_config = _config("SK_")

    host: str | None = None
    port: int = 80
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    gateways: tuple[GatewayAddress, ...] = Field(
        default=(),
        description='each gateway by id, JSON: [{"id": "00-30-f1-01-02-03", "host": "10.0.0.5", '
        '"port": 80, "username": "u", "password": "p"}]; a gateway not listed is reached at the '
        "address it pushes from, on SK_PORT with SK_USERNAME/SK_PASSWORD",
    )

    @property
    def configured(self) -> bool:
        """Real gateways are named (else simfleet runs the sandbox gateways)."""
        return self.host is not None or bool(self.gateways)


class WebhookSettings(BaseSettings):
    model_config = _config("WEBHOOK_")

    allow_private: bool = Field(default=False, description="allow loopback/private targets")
    allow_http: bool = Field(default=False, description="allow plain-http endpoint URLs")
    allowed_ports: tuple[int, ...] = Field(
        default=(),
        description="ports endpoint URLs may use, JSON: [443, 8443]; empty = any port",
    )
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=256, ge=1, description="POSTs in flight in all")
    per_endpoint_concurrency: int = Field(
        default=16, ge=1, description="POSTs in flight to one endpoint (its line's workers)"
    )
    retention_days: int = Field(default=30, ge=1)
    fast_delays_s: tuple[float, ...] = Field(
        default=(1.0, 2.0, 4.0, 8.0), description="waits between the first attempts (in process)"
    )
    retry_delays_s: tuple[float, ...] = Field(
        default=(60.0, 300.0, 1800.0, 7200.0, 21600.0),
        description="then waits via webhook.retry; the last one repeats until max_age_s",
    )
    max_age_s: float = Field(default=86400.0, gt=0, description="no attempt after this age")
    jitter: float = Field(default=0.2, ge=0, le=1, description="± fraction on retry_delays_s")
    lease_margin_s: float = Field(
        default=20.0, gt=0, description="a silent worker's delivery is taken over after this"
    )
    takeover_grace_s: float = Field(
        default=60.0, gt=0, description="a scheduled retry nobody made is swept after this"
    )
    sweep_interval_s: float = Field(default=5.0, gt=0)
    max_in_flight: int = Field(default=10_000, ge=1, description="deliveries held in memory")
    per_endpoint_queue: int = Field(default=1_000, ge=1, description="of which one endpoint")
    endpoint_cache_s: float = Field(default=5.0, ge=0)
    rotation_overlap_s: float = Field(
        default=86400.0, ge=0, description="the previous secret keeps signing this long"
    )
    sandbox_receiver_port: int = Field(
        default=8090, ge=0, description="`simfleet run` without resellers: the sandbox receiver"
    )
    sealing_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) sealing endpoint secrets, comma-separated, newest first; "
        "unset = a key file in the state dir (development only)",
    )
    failing_after: int = Field(
        default=5,
        ge=1,
        description="failed attempts in a row (no success) mark an endpoint failing",
    )
    disable_after_s: float = Field(
        default=3 * 86400.0,
        gt=0,
        description="an endpoint failing everything this long is disabled (default 3 days)",
    )


class ResellerApiSettings(BaseSettings):
    """The reseller API (``/reseller/v1``) and portal, for resellers holding an API token."""

    model_config = _config("RESELLER_API_")

    rate_per_s: float = Field(
        default=10.0, gt=0, description="requests per second per token (then 429 + Retry-After)"
    )
    burst: int = Field(default=40, ge=1, description="requests a token may make at once")
    token_days: float = Field(
        default=90.0, gt=0, le=366, description="a new token's validity unless told otherwise"
    )
    use_flush_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a token's uses are audited as one event per token per this many seconds",
    )


class AlertSettings(BaseSettings):
    """Operational alerts: checked by the scheduler, each sent once per incident, then resolved."""

    model_config = _config("ALERT_")

    webhook_url: SecretStr | None = Field(
        default=None,
        description='Slack-compatible incoming webhook (POST {"text": …}); unset = alerts are '
        "only logged and kept in Postgres",
    )
    interval_s: float = Field(default=60.0, gt=0, description="how often the checks run")
    window_s: float = Field(default=3600.0, gt=0, description="rates are measured over this")
    min_samples: int = Field(default=10, ge=1, description="no rate alert on fewer outcomes")
    verification_failure_rate: float = Field(
        default=0.2, ge=0, le=1, description="failed / finished verifications in the window"
    )
    helix_error_rate: float = Field(
        default=0.2, ge=0, le=1, description="failed / all Helix calls in the window"
    )
    consumer_lag: int = Field(
        default=10_000, ge=1, description="records a consumer group may be behind"
    )
    silent_sims: int = Field(default=10, ge=1, description="silent SIMs before an alert")
    timeout_s: float = Field(default=10.0, gt=0)


class RetentionSettings(BaseSettings):
    """How long rows of the tables that grow are kept (``producers/retention.py``, run every
    ``ROTATION_CLEANUP_INTERVAL_S``). What a retry, a de-duplication or a replay still needs is
    never removed, whatever the setting: open webhook claims, effects still without an outcome,
    and the SIM and reseller history in ``event_log``."""

    model_config = _config("RETENTION_")

    webhook_claims_days: int = Field(
        default=30,
        ge=1,
        description="finished webhook claims (they hold full bodies; a resend or a re-enabled "
        "endpoint's missed deliveries reach back this far); open ones are kept",
    )
    consumer_effects_days: int = Field(
        default=90,
        ge=1,
        description="carrier effects with a final outcome (a cause redelivered later acts "
        "again); keep it above the broker's retention",
    )
    sim_applied_events_days: int = Field(
        default=90, ge=1, description="ids of applied sim.lifecycle events (re-publication guard)"
    )
    inbound_sms_days: int = Field(default=90, ge=1, description="received SMS")
    helix_api_logs_days: int = Field(default=90, ge=1, description="the Helix call log")
    event_log_days: int = Field(
        default=365,
        ge=1,
        description="archived SMS, Helix calls, webhook deliveries, rejected pushes and reseller "
        "token uses (with their audit rows); SIM and reseller history (sim.lifecycle, "
        "reseller.registry) and DLQs are kept for good",
    )


class SecretsSettings(BaseSettings):
    """Shared secrets of the original system's HTTP entry points."""

    model_config = _config()

    gateway_secret: SecretStr = SecretStr("")
    finalizer_run_secret: SecretStr = SecretStr("")
    admin_run_secret: SecretStr = SecretStr("")
    bulk_run_secret: SecretStr = SecretStr("")
    sync_secret: SecretStr = SecretStr("")
    cancel_secret: SecretStr = SecretStr("")
    dashboard_auth: SecretStr = Field(
        default=SecretStr(""), description="user:password for the dashboard's HTTP Basic auth"
    )
    dashboard_csrf_secret: SecretStr = Field(
        default=SecretStr(""),
        description="random key signing the dashboard's CSRF tokens (the same on every replica); "
        "unset = a key file in the state dir",
    )


class Settings(BaseSettings):
    model_config = _config("SIMFLEET_")

    env: Literal["development", "test", "production"] = "development"
    state_dir: Path = Field(default=Path(".simfleet"), description="embedded data and pid files")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    summary_interval_s: float = Field(
        default=60.0, gt=0, description="console summary line with counts every … (idle: none)"
    )
    bridge_host: str = "127.0.0.1"
    bridge_port: int = 8080
    bridge_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    secrets_in_urls: bool = Field(
        default=True,
        description="accept GATEWAY_SECRET as ?secret= or /s/<secret>/ and run secrets as "
        "?secret= (for gateways and cron jobs that only take a URL); false = headers only",
    )
    bridge_produce_window_ms: int = Field(
        default=10,
        ge=0,
        description="pushes arriving together are produced to Kafka together, at most one "
        "round per this long (an idle bridge sends at once); 0 = each push on its own",
    )
    bridge_retry_window_s: float = Field(
        default=600.0,
        gt=0,
        description="an SMS pushed without a time of its own and pushed again within this long "
        "(a gateway's retry) is the same SMS",
    )
    max_request_head_bytes: int = Field(
        default=32 * 1024, ge=4096, description="request line + headers (bridge, dashboard); 431"
    )
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8000
    demo_sims: int = Field(
        default=8, ge=0, description="development with the sandboxes: demo SIMs seeded; 0 = none"
    )
    demo_interval_s: float = Field(default=10.0, gt=0, description="demo SMS round every …")
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=0, description="/healthz /readyz /metrics; 0 = any free port")
    sheet_csv_url: str | None = Field(default=None, validation_alias="SHEET_CSV_URL")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    helix: HelixSettings = Field(default_factory=HelixSettings)
    skyline: SkylineSettings = Field(default_factory=SkylineSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    reseller_api: ResellerApiSettings = Field(default_factory=ResellerApiSettings)
    rotation: RotationSettings = Field(
        default_factory=lambda: RotationSettings()  # noqa: PLW0108 (the class is defined below)
    )
    silence: SilenceSettings = Field(
        default_factory=lambda: SilenceSettings()  # noqa: PLW0108 (the class is defined below)
    )
    verification: VerificationSettings = Field(
        default_factory=lambda: VerificationSettings()  # noqa: PLW0108 (defined below)
    )

    @model_validator(mode="after")
    def _refuse_weak_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = production_problems(
            self.secret_values(),
            allow_private=self.webhooks.allow_private,
            allow_http=self.webhooks.allow_http,
        )
        if problems:
            raise ValueError("not allowed in production: " + "; ".join(problems))
        return self

    def secret_values(self) -> dict[str, str]:
        """Every configured secret by variable name (for redaction and checks; never print)."""
        found = {
            name.upper(): getattr(self.secrets, name).get_secret_value()
            for name in SecretsSettings.model_fields
        }
        found["HX_GRANT_PASSWORD"] = self.helix.grant_password.get_secret_value()
        found["SK_PASSWORD"] = self.skyline.password.get_secret_value()
        for gateway in self.skyline.gateways:  # optional: redacted when set
            if gateway.password is not None and gateway.password.get_secret_value():
                found[f"SK_GATEWAYS[{gateway.id}]"] = gateway.password.get_secret_value()
        found["HX_CLIENT_ID"] = self.helix.client_id
        if kafka_password := self.kafka.kafka_sasl_password.get_secret_value():
            found["KAFKA_SASL_PASSWORD"] = kafka_password  # optional: redacted when set
        sealing = self.webhooks.sealing_key
        found["WEBHOOK_SEALING_KEY"] = sealing.get_secret_value() if sealing else ""
        alert_url = self.alerts.webhook_url
        if alert_url and alert_url.get_secret_value():  # optional: redacted when set
            found["ALERT_WEBHOOK_URL"] = alert_url.get_secret_value()
        return found


class RotationSettings(BaseSettings):
    """The daily number cycle (UTC): each SIM's number is rotated once a day, every new number is
    proven by a verification SMS, unanswered verifications time out; the scheduler's cadences."""

    model_config = _config("ROTATION_")

    at: time = Field(default=time(5, 0), description="daily rotation time, HH:MM (UTC)")
    spread_s: float = Field(
        default=1800.0,
        ge=0,
        lt=86400,
        description="SIMs rotate spread over this many seconds after `at`, by hash of ICCID",
    )
    min_number_age_s: float = Field(
        default=3600.0, ge=0, description="a number younger than this waits for the next day"
    )
    tick_s: float = Field(default=60.0, gt=0, description="how often due rotations are requested")
    retry_delay_s: float = Field(
        default=600.0, gt=0, description="first wait before a failed rotation is retried (doubling)"
    )
    max_attempts: int = Field(default=4, ge=1, description="rotation attempts per SIM and day")
    park_after: int = Field(
        default=3,
        ge=1,
        description="rotation failures of a SIM in a row (across days) that park it for an operator",
    )
    breaker_error_rate: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="failed / all Helix calls over breaker_window_s that pause rotation fleet-wide",
    )
    breaker_window_s: float = Field(default=300.0, gt=0)
    breaker_min_calls: int = Field(
        default=10, ge=1, description="no pause on fewer calls in the window"
    )
    breaker_close_after: int = Field(
        default=3, ge=1, description="Helix calls in a row that succeed resume a paused rotation"
    )
    verification_expiry_s: float = Field(
        default=120.0, gt=0, description="how long a verification SMS may take to arrive"
    )
    verification_sweep_s: float = Field(
        default=30.0, gt=0, description="how often expired verifications are failed"
    )
    sender_tries: int = Field(
        default=3, ge=1, description="senders tried before a verification is skipped"
    )
    cleanup_interval_s: float = Field(
        default=3600.0, gt=0, description="how often rows past retention are deleted"
    )


class SilenceSettings(BaseSettings):
    """Inbound silence: an online SIM (number verified, gateway port registered) that receives
    no SMS for a while is announced (``sim.inbound_silent``) and shown on the dashboard."""

    model_config = _config("SILENCE_")

    after_s: float = Field(
        default=21600.0, gt=0, description="no SMS for this long makes an online SIM silent"
    )
    reseller_after_s: dict[str, float] = Field(
        default_factory=dict,
        description='per-reseller override of SILENCE_AFTER_S, JSON: {"acme": 3600}',
    )
    sweep_s: float = Field(default=300.0, gt=0, description="how often silent SIMs are looked for")

    @model_validator(mode="after")
    def _positive_overrides(self) -> SilenceSettings:
        bad = sorted(r for r, after in self.reseller_after_s.items() if not after > 0)
        if bad:
            raise ValueError(f"SILENCE_RESELLER_AFTER_S must be > 0 seconds: {', '.join(bad)}")
        return self

    def after_for(self, reseller_id: str | None) -> float:
        return self.reseller_after_s.get(reseller_id or "", self.after_s)


class VerificationSettings(BaseSettings):
    """Guards on verification SMS (expiry, sweep and sender tries are ``ROTATION_*``)."""

    model_config = _config("VERIFICATION_")

    retries: int = Field(
        default=1, ge=0, description="automatic retries through another sender after a timeout"
    )
    budget_s: float = Field(
        default=300.0,
        gt=0,
        description="a number's verification, retries included, ends within this many seconds "
        "of its first SMS: a retry that could not is not made",
    )
    sender_per_minute: int = Field(
        default=10, ge=1, description="verification SMS one sender SIM may send per minute"
    )
    number_per_hour: int = Field(
        default=6, ge=1, description="verification SMS one number may receive per hour"
    )
    suspect_after: int = Field(
        default=3, ge=1, description="unanswered verification SMS in a row make a sender suspect"
    )


Settings.model_rebuild()  # the groups defined after Settings

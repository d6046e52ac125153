"""schemathesis drives the bridge from its own OpenAPI schema: valid and invalid pushes alike
must never get a 5xx, and every rejected push must be kept on gateway.rejected."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from events.topics import GATEWAY_REJECTED
from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import serve_http
from infra.kafka import build_broker
from infra.metrics import PUSHES_REJECTED
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import create_bridge_app

pytestmark = pytest.mark.integration

SECRET = "fuzz-secret-0123456789"


def rejected_so_far() -> float:
    return sum(
        sample.value
        for metric in PUSHES_REJECTED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_fuzzed_pushes_never_get_a_server_error_and_rejections_are_kept(
    settings: Settings, kafka_bootstrap: str, topics: list[str], tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"secrets": SecretsSettings(gateway_secret=SecretStr(SECRET))}
    )
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    before = rejected_so_far()
    try:
        app = create_bridge_app(settings, Bus(broker, settings.kafka.topic_prefix), SystemClock())
        # the description is served on the ops port, not the bridge's: handed over as a file
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(app.openapi()))
        async with serve_http(app) as url:
            fuzz = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                str(schema),
                "--url",
                url,
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--header",
                f"x-gateway-secret:{SECRET}",
                "--report-dir",
                str(tmp_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(fuzz.communicate(), 240)
    finally:
        await broker.stop()
    report = output.decode(errors="replace")
    assert fuzz.returncode == 0, report[-3000:]
    rejected = rejected_so_far() - before
    assert rejected > 0, "the fuzzer sent nothing the bridge refused"

    consumer = AIOKafkaConsumer(
        GATEWAY_REJECTED.full_name(settings.kafka.topic_prefix),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    kept: list[Any] = []
    try:
        while len(kept) < rejected:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                break
            kept += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert len(kept) == rejected
    assert not [r for r in kept if SECRET.encode() in r.value]

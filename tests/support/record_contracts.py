"""Every record a test publishes, held to the published contracts (a pytest plugin).

Wraps ``Bus._send`` and ``Bus._send_encoded`` for the whole session: each record — its topic, key, headers and value, as
the bus computes them — is checked against ``events/schemas`` (JSON Schema, formats included)
and against its AsyncAPI message (header schema, key, topic), and its type is noted. A record
that breaks a contract fails the test that produced it (at teardown: the producing code itself is
left to behave as it does). At the end of a session that ran the whole integration suite, an
event type no test produced fails the session.

The check runs in the producing test's event loop, on every record (tens of thousands in the
load tests): jsonschema-rs decides whether a record is valid (microseconds a record; the Python
``jsonschema`` took over a millisecond, which the pipeline under test waited out), and only a
record it rejects is read again by ``jsonschema``, whose messages say what is wrong. A record
either validator rejects is a violation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from events import codec
from events.envelope import Event
from events.schema_export import SCHEMA_DIR
from events.topics import ALL_TOPICS
from infra.asyncapi import DOC_PATH
from infra.bus import Bus, EncodedEvent

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ledger:
    seen: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


LEDGER = Ledger()


@cache
def value_schema(event_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())
    return schema


@cache
def value_validator(event_type: str) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(value_schema(event_type), validate_formats=True)


@cache
def header_validator(event_type: str) -> jsonschema_rs.Draft7Validator:
    return jsonschema_rs.Draft7Validator(messages()[event_type]["headers"], validate_formats=True)


@cache
def messages() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
    found: dict[str, Any] = document["components"]["messages"]
    return found


def value_errors(event_type: str, record: dict[str, Any]) -> list[str]:
    if value_validator(event_type).is_valid(record):
        return []
    explained = Draft202012Validator(
        value_schema(event_type), format_checker=Draft202012Validator.FORMAT_CHECKER
    ).iter_errors(record)
    return [f"value: {e.message}" for e in explained] or [
        f"value: {e.message}" for e in value_validator(event_type).iter_errors(record)
    ]


def header_errors(event_type: str, headers: dict[str, str]) -> list[str]:
    if header_validator(event_type).is_valid(headers):
        return []
    explained = Draft7Validator(
        messages()[event_type]["headers"], format_checker=Draft7Validator.FORMAT_CHECKER
    ).iter_errors(headers)
    return [f"headers: {e.message}" for e in explained] or [
        f"headers: {e.message}" for e in header_validator(event_type).iter_errors(headers)
    ]


def problems(topic: str, key: bytes, headers: dict[str, str], value: bytes) -> list[str]:
    """What is wrong with one record, read as a subscriber reads it (empty: nothing)."""
    record = json.loads(value)
    event_type = record.get("type")
    message = messages().get(event_type)
    if message is None:
        return [f"type {event_type!r} has no AsyncAPI message"]
    found = value_errors(event_type, record) + header_errors(event_type, headers)
    attributes = ("id", "type", "time", "source", "subject", "specversion", "correlationid")
    found += [
        f"header ce_{a} {headers.get(f'ce_{a}')!r} is not the value's {a} {record.get(a)!r}"
        for a in attributes
        if headers.get(f"ce_{a}") != record.get(a)
    ]
    if key.decode() != record.get("subject"):
        found.append(f"key {key!r} is not the subject {record.get('subject')!r}")
    channel = next((t for t in ALL_TOPICS if topic.endswith(t.name)), None)
    if channel is None or event_type not in channel.types:
        found.append(f"{event_type} published to {topic}, not its channel")
    return found


def note(topic: str, key: bytes, headers: dict[str, str], value: bytes) -> None:
    event_type = json.loads(value).get("type", "?")
    LEDGER.seen[event_type] = LEDGER.seen.get(event_type, 0) + 1
    LEDGER.violations += [
        f"{event_type} on {topic}: {p}" for p in problems(topic, key, headers, value)
    ]


@pytest.fixture(scope="session", autouse=True)
def _records_held_to_contracts() -> Iterator[None]:
    send = Bus._send

    async def checked_send(self: Bus, event: Event, producer: Any) -> Any:
        topic, value = self.topic_name(event), codec.encode(event)
        note(topic, event.subject.encode(), codec.headers_for(event), value)
        return await send(self, event, producer)

    send_encoded = Bus._send_encoded

    async def checked_send_encoded(
        self: Bus, records: Sequence[EncodedEvent], producer: Any
    ) -> Any:
        for record in records:
            headers = {name: value.decode() for name, value in record.headers}
            note(self.encoded_topic_name(record), record.key, headers, record.value)
        return await send_encoded(self, records, producer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Bus, "_send", checked_send)
        patch.setattr(Bus, "_send_encoded", checked_send_encoded)
        yield


@pytest.fixture(autouse=True)
def _no_record_broke_a_contract() -> Iterator[None]:
    before = len(LEDGER.violations)
    yield
    broken = LEDGER.violations[before:]
    assert not broken, "records that break the published contracts:\n" + "\n".join(broken[:20])


WHOLE_SUITE_MARKERS = "not slow"


def whole_suite(config: pytest.Config) -> bool:
    """Whether this session runs every integration test (not a chosen file, test, -k, or a marker
    other than the one that leaves out the long fault tests: `make chaos` runs those alone)."""
    if config.option.keyword or config.option.markexpr not in ("", WHOLE_SUITE_MARKERS):
        return False
    integration = ROOT / "tests" / "integration"
    args = [Path(a) for a in config.args] or [ROOT / p for p in config.getini("testpaths")]
    return any(
        "::" not in str(a) and integration.is_relative_to((ROOT / a).resolve()) for a in args
    )


def missing_types() -> list[str]:
    from events.envelope import EVENT_TYPES

    return sorted(set(EVENT_TYPES) - set(LEDGER.seen))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Over the whole integration suite every event type must have been produced by a test and
    held to its schema: a type none produced fails the session (a chosen part is only reported)."""
    if session.config.option.collectonly or not session.testscollected:
        return
    if whole_suite(session.config) and (missing := missing_types()):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: no test produced these event types: {', '.join(missing)}", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LEDGER.seen:
        from events.envelope import EVENT_TYPES

        missing = missing_types()
        terminalreporter.write_line(
            f"event records checked against the contracts: {sum(LEDGER.seen.values())}, "
            f"{len(LEDGER.seen)}/{len(EVENT_TYPES)} types"
            + (f" (none of: {', '.join(missing)})" if missing else "")
        )

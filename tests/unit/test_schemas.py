import json
from datetime import UTC, datetime
from pathlib import Path

from jsonschema import Draft202012Validator

from events import encode
from events.schema_export import SCHEMA_DIR, render_schemas, stale_schemas, write_schemas
from events.sms import SmsReceived


def test_checked_in_schemas_match_the_models() -> None:
    assert stale_schemas() == [], "run `make schemas` and commit events/schemas/"


def test_a_changed_model_is_detected(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    (tmp_path / "sms.received.json").write_text("{}\n")
    (tmp_path / "gone.json").write_text("{}\n")
    assert stale_schemas(tmp_path) == ["gone.json", "sms.received.json"]


def test_every_type_has_a_schema() -> None:
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(render_schemas())


def test_every_schema_declares_itself_and_requires_the_cloudevents_attributes() -> None:
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        event_type = path.name.removesuffix(".json")
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        assert schema["$id"] == f"urn:simfleet:event:{event_type}", path.name
        assert {"specversion", "type", "id", "source"} <= set(schema["required"]), path.name
        assert schema["properties"]["type"]["const"] == event_type, path.name


def test_a_record_missing_a_cloudevents_attribute_is_refused_by_its_schema() -> None:
    event = SmsReceived.create(
        producer="simfleet/gateway_bridge",
        time=datetime(2026, 2, 4, 12, 0, tzinfo=UTC),
        gateway_id="00-30-f1-01-02-03",
        port="1.01",
        sender="+15551230000",
        to="+15559870000",
        body="hello",
        received_at=datetime(2026, 2, 4, 12, 0, tzinfo=UTC),
    )
    schema = json.loads((SCHEMA_DIR / "sms.received.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    record = json.loads(encode(event))
    assert list(validator.iter_errors(record)) == []
    for attribute in ("specversion", "type", "id", "source"):
        missing = {k: v for k, v in record.items() if k != attribute}
        assert not validator.is_valid(missing), attribute

from pathlib import Path

from events.schema_export import SCHEMA_DIR, render_schemas, stale_schemas, write_schemas


def test_checked_in_schemas_match_the_models() -> None:
    assert stale_schemas() == [], "run `make schemas` and commit events/schemas/"


def test_a_changed_model_is_detected(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    (tmp_path / "sms.received.json").write_text("{}\n")
    (tmp_path / "gone.json").write_text("{}\n")
    assert stale_schemas(tmp_path) == ["gone.json", "sms.received.json"]


def test_every_type_has_a_schema() -> None:
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(render_schemas())

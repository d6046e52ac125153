"""The written map names everything the code publishes, so a new topic or event type cannot
land without its documentation."""

import re
from pathlib import Path

import yaml

from events.envelope import EVENT_TYPES
from events.topics import ALL_TOPICS
from infra.asyncapi import DOC_PATH

ROOT = Path(__file__).resolve().parents[2]


def _topic_table_rows() -> dict[str, str]:
    """ARCHITECTURE.md's topic table: topic name → the row's text."""
    rows: dict[str, str] = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        if found := re.match(r"\| `([a-z._]+)` \|", line):
            rows[found.group(1)] = line
    return rows


def test_architecture_topic_table_names_every_topic_with_its_event_types() -> None:
    rows = _topic_table_rows()
    missing_topics = {t.name for t in ALL_TOPICS} - set(rows)
    assert not missing_topics, f"ARCHITECTURE.md's topic table lacks {sorted(missing_topics)}"
    for topic in ALL_TOPICS:
        named = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", rows[topic.name]))
        missing = topic.types - named
        assert not missing, f"ARCHITECTURE.md's row for {topic.name} lacks {sorted(missing)}"


def test_every_event_type_is_carried_by_a_documented_topic() -> None:
    carried = set().union(*(t.types for t in ALL_TOPICS))
    assert set(EVENT_TYPES) <= carried


def test_asyncapi_messages_name_every_event_type() -> None:
    text = DOC_PATH.read_text()
    document = yaml.safe_load(text)
    assert document["channels"]
    missing = {name for name in EVENT_TYPES if name not in text}
    assert not missing, f"docs/asyncapi.yaml does not name {sorted(missing)}"

"""docs/subscribers.md shows a record to the letter: checked as a produced record is."""

import json
import re
from pathlib import Path

from events import decode
from events.sms import SmsReceived
from tests.support.record_contracts import problems

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "subscribers.md"


def example() -> tuple[bytes, dict[str, str], bytes]:
    text = GUIDE.read_text()
    shown = re.search(r"```text\nkey: (.+)\nheaders:\n(.*?)```", text, re.S)
    value = re.search(r"```json\n(.*?)```", text, re.S)
    assert shown
    assert value
    headers = dict(
        line.strip().split(": ", 1) for line in shown.group(2).splitlines() if line.strip()
    )
    return shown.group(1).encode(), headers, value.group(1).encode()


def test_the_example_record_keeps_every_contract() -> None:
    key, headers, value = example()
    assert problems("sms.inbound", key, headers, value) == []


def test_the_example_id_is_the_one_simfleet_gives_that_sms() -> None:
    _, _, value = example()
    shown = decode(value)
    again = SmsReceived.create(
        producer=shown.source, time=shown.time, **json.loads(shown.data.model_dump_json())
    )
    assert again.id == shown.id

import logging

import pytest

from infra.skyline import (
    SkylineUnavailable,
    TaskStatus,
    _MaskQueryPasswords,
    mask_query_password,
    wire_number,
)


@pytest.mark.parametrize(
    ("number", "wire"),
    [
        ("+16465550001", "16465550001"),
        ("6465550001", "16465550001"),
        ("+447700900123", "447700900123"),
    ],
)
def test_numbers_go_to_the_gateway_as_digits_without_plus(number: str, wire: str) -> None:
    assert wire_number(number) == wire


@pytest.mark.parametrize(
    ("raw", "code", "text", "accepted"),
    [
        ("0 OK", 0, "OK", True),
        ("13 Duplicated TaskId", 13, "Duplicated TaskId", True),
        ("2 Invalid Port", 2, "Invalid Port", False),
        (" 16 Too Many Task ", 16, "Too Many Task", False),
        ("7", 7, "", False),
    ],
)
def test_a_task_status_is_code_and_text(raw: str, code: int, text: str, accepted: bool) -> None:
    status = TaskStatus.parse(9, raw)
    assert (status.tid, status.code, status.text, status.accepted) == (9, code, text, accepted)


def test_an_unreadable_status_is_transient() -> None:
    with pytest.raises(SkylineUnavailable):
        TaskStatus.parse(1, "OK")


def test_the_password_is_masked_in_urls_and_in_httpx_log_lines() -> None:
    url = "http://gw:80/goip_post_sms.html?username=u&password=s3cr%21t&x=1"
    assert mask_query_password(url) == "http://gw:80/goip_post_sms.html?username=u&password=***&x=1"
    record = logging.LogRecord(
        "httpx", logging.INFO, "", 0, 'HTTP Request: %s %s "%s"', ("POST", url, "200"), None
    )
    assert _MaskQueryPasswords().filter(record)
    assert "s3cr" not in record.getMessage()
    assert "password=***" in record.getMessage()

"""Every pattern that reads gateway input runs in linear time, on inputs built to make a
backtracking pattern go quadratic (long runs of what a repeated group could split many ways).

The bound is generous on purpose: each input is at the size the bridge lets through, linear
parsing takes milliseconds, a quadratic pattern takes tens of seconds to minutes.
"""

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from consumers.verification.rules import code_in, might_be_reply
from producers.skyline.content import decode_content, split_header_block
from producers.skyline.push import parse_http_push, parse_json_push, parse_simple_push
from producers.skyline.push_fields import (
    MAX_PUSH_ITEMS,
    MAX_SMS_BODY_CHARS,
    PushRejected,
    load_json,
    receiver_of,
    sender_of,
)

N = MAX_SMS_BODY_CHARS  # the longest text that gets past the bridge
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# linear work on N characters is milliseconds; quadratic is ~N²/1e8 s (minutes here)
BOUND_S = 1.0

ADVERSARIAL_BODIES = {
    "verify then spaces": "verify" + " " * N + "x",
    "verify, separator, spaces": "VERIFY" + " " * (N // 2) + ":" + " " * (N // 2) + "!",
    "verify then tabs and newlines": "Verify" + "\t\n\r " * (N // 4) + "#",
    "verify repeated": "verify " * (N // 7),
    "verify and separators": "verify:" * (N // 7),
    "long word": "A" * N,
    "blank-line lookalike": ("\n" + " " * 50) * (N // 51),
    "header-name lookalike": "Sender" + " " * N + "x",
    "base64 lookalike": "QUJD" * (N // 4),
}


def within_bound(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    with contextlib.suppress(PushRejected):  # refusing is fine; taking minutes to is not
        call()
    return time.perf_counter() - started


@pytest.mark.parametrize("body", ADVERSARIAL_BODIES.values(), ids=ADVERSARIAL_BODIES.keys())
def test_the_verification_matcher_is_linear(body: str) -> None:
    assert within_bound(lambda: code_in(body)) < BOUND_S
    assert within_bound(lambda: might_be_reply(body.encode())) < BOUND_S


@pytest.mark.parametrize("body", ADVERSARIAL_BODIES.values(), ids=ADVERSARIAL_BODIES.keys())
def test_content_decoding_is_linear(body: str) -> None:
    assert within_bound(lambda: decode_content(body)) < BOUND_S
    assert within_bound(lambda: split_header_block(body + "\r\n\r\nx")) < BOUND_S
    assert within_bound(lambda: parse_http_push({"sender": "Google"}, body.encode(), now=NOW)) < (
        BOUND_S
    )


@pytest.mark.parametrize(
    "value",
    ["a" + " " * N + "!", "+" + "1" * N, "1" * N + "x", "A" * N, "-" * N, " " * N + "a"],
    ids=["alpha-spaces", "plus-digits", "digits-x", "letters", "dashes", "spaces"],
)
def test_sender_and_number_checks_are_linear(value: str) -> None:
    assert within_bound(lambda: sender_of(value, "from")) < BOUND_S
    assert within_bound(lambda: receiver_of(value, "to")) < BOUND_S


def test_the_matcher_still_reads_codes_after_the_change() -> None:
    assert code_in("VERIFY  :  abc123") == "ABC123"
    assert code_in("carrier says: verify-XY12Z9 thanks") == "XY12Z9"
    assert code_in("VERIFY ABC1234") is None


def test_an_sms_longer_than_255_concatenated_parts_is_refused() -> None:
    fits = parse_simple_push({"from": "Google", "body": "x" * N}, now=NOW)
    assert len(fits.sms[0].data.body) == N
    with pytest.raises(PushRejected) as refused:
        parse_simple_push({"from": "Google", "body": "x" * (N + 1)}, now=NOW)
    assert refused.value.status_code == 422
    assert "longer than an SMS can be" in refused.value.reason
    row = [0, "1.01", 1, "Google", "", "y" * (N + 1)]
    with pytest.raises(PushRejected, match="sms row 1: SMS text of"):
        parse_json_push({"type": "recv-sms", "sms": [row]}, gateway_id="gw", now=NOW)
    with pytest.raises(PushRejected, match="longer than an SMS can be"):
        parse_http_push({"sender": "Google"}, b"z" * (N + 1), now=NOW)


def test_pushes_with_too_many_rows_or_items_are_refused() -> None:
    row = [0, "1.01", 1, "Google", "", "hi"]
    with pytest.raises(PushRejected, match="sms"):
        parse_json_push(
            {"type": "recv-sms", "sms": [row] * (MAX_PUSH_ITEMS + 1)}, gateway_id="g", now=NOW
        )
    status = {"port": "1.01", "st": 3}
    with pytest.raises(PushRejected, match="status"):
        parse_json_push(
            {"type": "dev-status", "status": [status] * (MAX_PUSH_ITEMS + 1)},
            gateway_id="g",
            now=NOW,
        )
    with pytest.raises(PushRejected, match=f"at most {MAX_PUSH_ITEMS}"):
        parse_simple_push([{"from": "Google", "body": "x"}] * (MAX_PUSH_ITEMS + 1), now=NOW)


def test_deeply_nested_json_is_a_malformed_body_not_a_crash() -> None:
    with pytest.raises(PushRejected) as refused:
        load_json(b"[" * 200_000)
    assert refused.value.status_code == 400
    assert "nested too deeply" in refused.value.reason

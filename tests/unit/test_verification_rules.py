from datetime import UTC, datetime, timedelta

import pytest

from consumers.verification_rules import (
    CODE_ALPHABET,
    Sender,
    code_in,
    expiry,
    matches,
    might_be_reply,
    new_code,
    senders_to_try,
    skip_reason,
    task_id,
    verification_text,
)

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def test_a_code_is_six_characters_of_uppercase_letters_and_digits() -> None:
    codes = {new_code() for _ in range(500)}
    assert all(len(c) == 6 and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert len(codes) > 495  # 36**6 possibilities: repeats would mean a broken source


def test_a_code_is_drawn_with_the_given_choice_function() -> None:
    assert new_code(lambda _alphabet: "Q") == "QQQQQQ"


@pytest.mark.parametrize(
    "body",
    [
        "VERIFY ABC123",
        "verify abc123",
        "  Verify   aBc123  ",
        "VERIFY\r\nABC123",
        "VERIFYABC123",
        "VERIFY: ABC123",
        "Free msg: VERIFY ABC123.",
    ],
)
def test_a_reply_is_recognised_whatever_its_case_and_spacing(body: str) -> None:
    assert code_in(body) == "ABC123"
    assert matches("ABC123", body)


@pytest.mark.parametrize(
    "body",
    ["VERIFY ABC1234", "VERIFY AB123", "VERIFIED ABC123", "ABC123", "your code is ABC123", ""],
)
def test_other_text_is_no_reply(body: str) -> None:
    assert code_in(body) is None


def test_a_different_code_does_not_match() -> None:
    assert not matches("ABC123", "VERIFY ABC124")


def test_the_sent_text_reads_back_as_its_code() -> None:
    code = new_code()
    assert code_in(verification_text(code)) == code


def test_the_raw_prefilter_keeps_every_reply() -> None:
    assert might_be_reply(b'{"data":{"body":"Verify abc123"}}')
    assert not might_be_reply(b'{"data":{"body":"hello"}}')


def test_expiry_is_the_send_time_plus_the_window() -> None:
    assert expiry(T0, 120) == T0 + timedelta(minutes=2)


def sender(iccid: str, *, verified: bool = True, used: datetime | None = None) -> Sender:
    return Sender(iccid, f"{iccid[-1]}.01", "gw", verified, used)


def test_the_target_never_sends_its_own_code() -> None:
    chosen = senders_to_try([sender("A"), sender("B")], "A", limit=5)
    assert [s.iccid for s in chosen] == ["B"]


def test_no_other_sim_means_no_sender() -> None:
    assert senders_to_try([sender("A")], "A", limit=3) == []
    assert senders_to_try([], "A", limit=3) == []


def test_verified_senders_come_first_then_the_least_recently_used() -> None:
    candidates = [
        sender("B", used=T0),
        sender("C", verified=False),
        sender("D", used=T0 - timedelta(hours=1)),
        sender("E"),
    ]
    chosen = senders_to_try(candidates, "A", limit=3)
    assert [s.iccid for s in chosen] == ["E", "D", "B"]
    assert [s.iccid for s in senders_to_try(candidates, "A", limit=9)][-1] == "C"


def test_a_sender_without_a_port_is_not_tried() -> None:
    assert senders_to_try([Sender("B", "")], "A", limit=3) == []


def test_concurrent_verifications_spread_over_idle_senders() -> None:
    idle = [sender(f"S{i}") for i in range(10)]
    firsts = {senders_to_try(idle, f"T{t}", limit=1)[0].iccid for t in range(40)}
    assert len(firsts) > 3


def test_task_ids_are_stable_positive_31_bit_and_differ_per_sender() -> None:
    assert task_id("req", "B") == task_id("req", "B")
    assert task_id("req", "B") != task_id("req", "C")
    assert all(0 < task_id("r", str(i)) < 2**31 for i in range(200))


def test_the_skip_reason_names_what_went_wrong() -> None:
    assert "no online SIM" in skip_reason([])
    assert "B: 5 SIM Unregistered" in skip_reason(["B: 5 SIM Unregistered"])

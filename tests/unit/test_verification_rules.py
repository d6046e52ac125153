from datetime import UTC, datetime, timedelta

import pytest

from consumers.verification.rules import (
    CODE_ALPHABET,
    Sender,
    after_timeout,
    avoiding,
    becomes_suspect,
    code_in,
    expiry,
    matches,
    might_be_reply,
    new_code,
    next_free_at,
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
    assert "no other active SIM" in skip_reason([])
    assert "B: 5 SIM Unregistered" in skip_reason(["B: 5 SIM Unregistered"])


def test_a_retry_prefers_another_sender_then_another_gateway_and_suspects_come_last() -> None:
    earlier = Sender("B", "1.01", "gw-1", last_used_at=T0 - timedelta(hours=1))
    same_gateway = Sender("C", "2.01", "gw-1", last_used_at=T0)
    other_gateway = Sender("D", "1.01", "gw-2", verified=False)  # ranks below C otherwise
    suspect = Sender("E", "3.01", "gw-3", suspect=True)
    candidates = [earlier, same_gateway, other_gateway, suspect]

    first = senders_to_try(candidates, "A", limit=9)
    assert [s.iccid for s in first] == ["B", "C", "D", "E"]
    retry = senders_to_try(candidates, "A", limit=9, avoid_senders={"B"}, avoid_gateways={"gw-1"})
    assert [s.iccid for s in retry] == ["D", "C", "E", "B"]  # avoided: only if all else fails


def test_a_retry_avoids_every_earlier_sender_once() -> None:
    assert avoiding((), "B") == ("B",)
    assert avoiding(("B",), "C") == ("B", "C")
    assert avoiding(("B",), "B") == ("B",)
    assert avoiding(("gw-1",), None) == ("gw-1",)


def test_a_timeout_is_retried_as_often_as_configured_then_fails() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    at = start + timedelta(minutes=2)

    def after(attempt: int, retries: int) -> str:
        return after_timeout(attempt, retries, start, at, expiry_s=120, budget_s=3600)

    assert after(1, retries=1) == "retry"
    assert after(2, retries=1) == "fail"
    assert after(1, retries=0) == "fail"
    assert [after(a, retries=2) for a in (1, 2, 3)] == ["retry", "retry", "fail"]


def test_a_retry_is_made_only_if_it_can_end_within_the_numbers_budget() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    expired = start + timedelta(minutes=2, seconds=30)  # the first SMS timed out, seen late
    assert after_timeout(1, 3, start, expired, expiry_s=120, budget_s=300) == "retry"
    assert after_timeout(1, 3, start, expired, expiry_s=120, budget_s=240) == "fail"
    third = start + timedelta(minutes=4, seconds=30)  # the retry timed out too
    assert after_timeout(2, 3, start, third, expiry_s=120, budget_s=300) == "fail"
    assert after_timeout(2, 3, start, third, expiry_s=120, budget_s=420) == "retry"


def test_a_rate_limit_has_room_until_its_window_is_full() -> None:
    minute = timedelta(minutes=1)
    sends = [T0 - timedelta(seconds=s) for s in (50, 30, 10)]
    assert next_free_at(sends, 4, minute, T0) is None
    # full: room again when the oldest send inside the window leaves it
    assert next_free_at(sends, 3, minute, T0) == T0 - timedelta(seconds=50) + minute
    assert next_free_at(sends, 2, minute, T0) == T0 - timedelta(seconds=30) + minute
    # sends older than the window do not count
    assert next_free_at([T0 - timedelta(seconds=61), *sends[1:]], 3, minute, T0) is None
    assert next_free_at([], 1, minute, T0) is None


def test_a_sender_turns_suspect_once_at_the_threshold() -> None:
    assert not becomes_suspect(2, already=False, threshold=3)
    assert becomes_suspect(3, already=False, threshold=3)
    assert becomes_suspect(5, already=False, threshold=3)  # counted in one sweep
    assert not becomes_suspect(4, already=True, threshold=3)

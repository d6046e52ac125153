"""The produce window: an idle window sends at once; callers arriving while a round is recent
share the next one, each answered with its own records' acknowledgements or its round's error."""

import asyncio
from collections.abc import Sequence

import pytest

from infra.produce_window import ProduceWindow

WINDOW_S = 0.05


class Rounds:
    """A stand-in for the producer: records each round; the acknowledgement of a record is its
    text upper-cased, or the round fails if a record says so."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.at: list[float] = []

    async def send_all(self, records: Sequence[str]) -> list[str]:
        self.sent.append(list(records))
        self.at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0)
        if "fail" in records:
            raise ConnectionError("broker gone")
        return [record.upper() for record in records]


async def test_an_idle_window_sends_at_once() -> None:
    window: ProduceWindow[str, str] = ProduceWindow(WINDOW_S)
    rounds = Rounds()
    started = asyncio.get_running_loop().time()
    assert await window.submit(["a"], rounds.send_all) == ["A"]
    assert rounds.sent == [["a"]]
    assert rounds.at[0] - started < WINDOW_S / 2


async def test_callers_after_a_round_share_the_next_one_and_get_their_own_acks() -> None:
    window: ProduceWindow[str, str] = ProduceWindow(WINDOW_S)
    rounds = Rounds()
    first = await window.submit(["a"], rounds.send_all)
    later = await asyncio.gather(
        window.submit(["b", "c"], rounds.send_all),
        window.submit(["d"], rounds.send_all),
        window.submit(["e", "f", "g"], rounds.send_all),
    )
    assert first == ["A"]
    assert list(later) == [["B", "C"], ["D"], ["E", "F", "G"]]
    assert rounds.sent == [["a"], ["b", "c", "d", "e", "f", "g"]]
    assert rounds.at[1] - rounds.at[0] >= WINDOW_S * 0.9  # at most one round per window


async def test_a_failed_round_fails_its_callers_only() -> None:
    window: ProduceWindow[str, str] = ProduceWindow(WINDOW_S)
    rounds = Rounds()
    await window.submit(["a"], rounds.send_all)
    failing = asyncio.gather(
        window.submit(["b"], rounds.send_all),
        window.submit(["fail"], rounds.send_all),
        return_exceptions=True,
    )
    assert [type(r) for r in await failing] == [ConnectionError, ConnectionError]
    assert await window.submit(["c"], rounds.send_all) == ["C"]


async def test_a_caller_that_gave_up_does_not_disturb_the_others() -> None:
    window: ProduceWindow[str, str] = ProduceWindow(WINDOW_S)
    rounds = Rounds()
    await window.submit(["a"], rounds.send_all)
    impatient = asyncio.create_task(window.submit(["b"], rounds.send_all))
    patient = asyncio.create_task(window.submit(["c"], rounds.send_all))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == ["C"]
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert rounds.sent[-1] == ["b", "c"]  # already handed over: the record still goes

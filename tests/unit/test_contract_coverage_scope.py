"""When the 'every event type was produced' check applies: the whole integration suite only, so
that `make chaos` (the long fault tests alone) is not failed for types those few tests never send."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.record_contracts import whole_suite


def config(args: list[str], markexpr: str = "", keyword: str = "") -> pytest.Config:
    fake = SimpleNamespace(
        option=SimpleNamespace(keyword=keyword, markexpr=markexpr),
        args=args,
        getini=lambda name: ["tests"],
    )
    return fake  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("args", "markexpr", "keyword", "expected"),
    [
        (["tests/unit", "tests/integration"], "not slow", "", True),  # make test
        (["tests"], "", "", True),
        ([], "", "", True),
        (["tests"], "slow", "", False),  # make chaos
        (["tests/integration"], "not slow", "restart", False),
        (["tests/integration/test_bus.py"], "", "", False),
        (["tests/integration::test_x"], "", "", False),
        (["tests/unit"], "", "", False),
    ],
)
def test_only_a_session_over_the_whole_integration_suite_must_produce_every_type(
    args: list[str], markexpr: str, keyword: str, expected: bool
) -> None:
    assert whole_suite(config(args, markexpr, keyword)) is expected

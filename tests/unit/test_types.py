import pytest

from events.types import luhn_ok, normalize_e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5559870000", "+15559870000"),
        ("15559870000", "+15559870000"),
        ("+15559870000", "+15559870000"),
        ("(555) 987-0000", "+15559870000"),
        ("+447911123456", "+447911123456"),
    ],
)
def test_numbers_normalise_to_e164(raw: str, expected: str) -> None:
    assert normalize_e164(raw) == expected


@pytest.mark.parametrize("raw", ["", "Google", "123", "25559870000", "+1"])
def test_non_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="number"):
        normalize_e164(raw)


def test_luhn() -> None:
    assert luhn_ok("356938035643809")
    assert not luhn_ok("356938035643808")

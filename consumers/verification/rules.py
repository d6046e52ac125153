"""Pure decisions of number verification: codes, recognising a reply, choosing a sender."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

CODE_ALPHABET = string.ascii_uppercase + string.digits
CODE_LENGTH = 6
# tolerant of case, spacing and a separator ("verify: abc123"), and of text around it (some
# carriers prefix messages), but the code must stand alone: "VERIFY ABC1234" is no match.
# Possessive spacing (``*+``), one optional separator group: linear on any body. The former
# ``\s*[:#-]?\s*`` tried every split of a run of spaces between its two ``\s*`` (quadratic:
# 39k spaces after "verify" held the event loop for 15 s).
_VERIFY = re.compile(
    r"(?<![A-Z0-9])VERIFY\s*+(?:[:#-]\s*+)?([A-Z0-9]{6})(?![A-Z0-9])", re.IGNORECASE
)
_EPOCH = datetime.min.replace(tzinfo=UTC)


def new_code(choice: Callable[[str], str] = secrets.choice) -> str:
    """Six characters from A-Z0-9, from the OS's CSPRNG: a code must not be guessable."""
    return "".join(choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def verification_text(code: str) -> str:
    return f"VERIFY {code}"


def code_in(body: str) -> str | None:
    """The code of a ``VERIFY <code>`` message, upper-cased; None for any other text."""
    found = _VERIFY.search(body)
    return found.group(1).upper() if found else None


def matches(expected: str, body: str) -> bool:
    return code_in(body) == expected.upper()


def might_be_reply(raw: bytes) -> bool:
    """A cheap test on a record's raw bytes, before decoding it: ours all say "verify"."""
    return b"verify" in raw.lower()


def expiry(sent_at: datetime, expiry_s: float) -> datetime:
    return sent_at + timedelta(seconds=expiry_s)


@dataclass(frozen=True)
class Sender:
    """A SIM that can send the code: active, in a known gateway port."""

    iccid: str
    port: str
    gateway_id: str | None = None
    verified: bool = True  # False: mid-rotation, but its previous number was verified lately
    last_used_at: datetime | None = None
    suspect: bool = False  # its verification SMS went unanswered repeatedly
    proven: bool = True  # its number, or its last one, was verified (else: a new fleet's SIM)


def senders_to_try(
    candidates: Sequence[Sender],
    target_iccid: str,
    *,
    limit: int,
    avoid_senders: Collection[str] = (),
    avoid_gateways: Collection[str] = (),
) -> list[Sender]:
    """Up to ``limit`` senders, best first: never the target itself; the senders of earlier
    attempts (``avoid_senders``) and suspect senders only when nobody else is left; a gateway
    other than the earlier attempts' before the same one; SIMs whose current number is verified
    before SIMs mid-rotation; then the least recently used (spreads the load over the fleet);
    ties broken by a hash of (target, sender), so concurrent verifications of different SIMs do
    not all pick the same idle sender."""
    usable = [c for c in candidates if c.iccid != target_iccid and c.port]
    usable.sort(
        key=lambda c: (
            c.iccid in avoid_senders,
            c.suspect,
            c.gateway_id is not None and c.gateway_id in avoid_gateways,
            not c.verified,
            c.last_used_at or _EPOCH,
            hashlib.sha256(f"{target_iccid}|{c.iccid}".encode()).digest(),
        )
    )
    return usable[:limit]


def next_free_at(
    recent: Sequence[datetime], limit: int, window: timedelta, now: datetime
) -> datetime | None:
    """Rate limit: None if one more send fits in the window ending ``now``; else the moment it
    will (when the oldest send that keeps the window full leaves it)."""
    inside = sorted(t for t in recent if t > now - window)
    if len(inside) < limit:
        return None
    return inside[-limit] + window


def after_timeout(  # noqa: PLR0917 (one decision over the six facts it weighs)
    attempt: int, retries: int, started_at: datetime, now: datetime, expiry_s: float,
    budget_s: float,
) -> Literal["retry", "fail"]:  # fmt: skip
    """A timed-out verification is tried again through another sender up to ``retries`` times,
    each retry only if it can end (``expiry_s`` from now) within the number's budget, counted
    from its first send; then the number's verification has failed."""
    within_budget = now + timedelta(seconds=expiry_s) <= started_at + timedelta(seconds=budget_s)
    return "retry" if attempt <= retries and within_budget else "fail"


def avoiding(earlier: Sequence[str], this: str | None) -> tuple[str, ...]:
    """The avoid list of a retry: the earlier attempts' plus this one's (each once, in order)."""
    return tuple(dict.fromkeys([*earlier, *([this] if this else [])]))


def becomes_suspect(unanswered: int, *, already: bool, threshold: int) -> bool:
    """A sender turns suspect when its unanswered SMS in a row reach the threshold (once)."""
    return not already and unanswered >= threshold


def task_id(*parts: str) -> int:
    """The gateway's ``tid`` for one send: stable, so a retried send is recognised by the gateway
    ("13 Duplicated TaskId") instead of sending the SMS twice; positive 31-bit."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1


def skip_reason(errors: Sequence[str]) -> str:
    if not errors:
        return "no other active SIM in a known gateway port to send the code from (yet)"
    return "no sender could send the code: " + "; ".join(errors)[:500]

"""Pure decisions of the daily number cycle: when each SIM rotates, the refs that make one day's
rotation one request per SIM, retries, and what a rotation request may still do.

Each SIM has one slot a day: the configured time (05:00 UTC by default) plus an offset taken
from a hash of its ICCID, spread over ``spread_s`` — the same SIM always gets the same offset,
so every scheduler computes the same slot and the same ref (``rotation:<YYYY-MM-DD>``, the date
of the day the slot belongs to). A number younger than ``min_number_age_s`` at a slot skips it:
a SIM activated at 04:59 keeps its fresh number until the next day. ``online_until`` is the
SIM's next slot under the same rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from infra.settings import RotationSettings

ROTATION_PREFIX = "rotation:"
RETRY_MARK = ":retry-"
DAY = timedelta(days=1)

Decision = Literal["act", "recover", "replay", "refuse"]


@dataclass(frozen=True)
class RotationPolicy:
    at: time = time(5, 0)
    spread_s: float = 1800.0
    min_number_age_s: float = 3600.0
    retry_delay_s: float = 600.0
    max_attempts: int = 4

    @classmethod
    def from_settings(cls, s: RotationSettings) -> RotationPolicy:
        return cls(s.at, s.spread_s, s.min_number_age_s, s.retry_delay_s, s.max_attempts)


@dataclass(frozen=True)
class Slot:
    day: date  # the day whose rotation this is (names the ref)
    at: datetime

    @property
    def ref(self) -> str:
        return rotation_ref(self.day)


def spread_offset(iccid: str, spread_s: float) -> timedelta:
    """Where in the spread window this SIM rotates: stable per ICCID, uniform over the fleet."""
    if spread_s < 1:
        return timedelta(0)
    digest = int.from_bytes(hashlib.sha256(iccid.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % int(spread_s))


def slot(iccid: str, day: date, policy: RotationPolicy) -> Slot:
    start = datetime.combine(day, policy.at.replace(tzinfo=None), tzinfo=UTC)
    return Slot(day, start + spread_offset(iccid, policy.spread_s))


def _old_enough(number_since: datetime | None, at: datetime, policy: RotationPolicy) -> bool:
    return number_since is None or number_since <= at - timedelta(seconds=policy.min_number_age_s)


def due_slot(
    iccid: str, number_since: datetime | None, now: datetime, policy: RotationPolicy
) -> Slot | None:
    """The SIM's latest slot at or before ``now``, if its number was old enough then."""
    day = now.astimezone(UTC).date()
    latest = slot(iccid, day, policy)
    while latest.at > now:  # twice at most: the spread is shorter than a day
        day -= DAY
        latest = slot(iccid, day, policy)
    return latest if _old_enough(number_since, latest.at, policy) else None


def next_rotation_at(
    iccid: str, number_since: datetime | None, now: datetime, policy: RotationPolicy
) -> datetime:
    """The SIM's first slot after ``now`` at which a number held since ``number_since`` rotates."""
    day = now.astimezone(UTC).date() - DAY
    upcoming = slot(iccid, day, policy)
    while upcoming.at <= now or not _old_enough(number_since, upcoming.at, policy):
        day += DAY
        upcoming = slot(iccid, day, policy)
    return upcoming.at


def next_daily_at(now: datetime, at: time = time(5, 0)) -> datetime:
    """The next ``at`` o'clock UTC strictly after ``now`` (the original's ``online_until``)."""
    return next_rotation_at("", None, now, RotationPolicy(at=at, spread_s=0, min_number_age_s=0))


def current_day(now: datetime, policy: RotationPolicy) -> date:
    """The rotation day under way: today once ``at`` has come, yesterday before."""
    today = now.astimezone(UTC).date()
    start = datetime.combine(today, policy.at.replace(tzinfo=None), tzinfo=UTC)
    return today if now >= start else today - DAY


def rotation_ref(day: date) -> str:
    return f"{ROTATION_PREFIX}{day.isoformat()}"


def retry_ref(key: str, attempt: int) -> str:
    return f"{key}{RETRY_MARK}{attempt}"


def rotation_key(ref: str) -> str:
    """What at most one number change may answer: a day (its retries included) or the ref."""
    if ref.startswith(ROTATION_PREFIX):
        return ref.split(RETRY_MARK, 1)[0]
    return ref


def retry_at(attempts: int, failed_at: datetime, policy: RotationPolicy) -> datetime | None:
    """When a failed rotation is tried again (doubling waits); None once attempts are spent."""
    if attempts >= policy.max_attempts:
        return None
    return failed_at + timedelta(seconds=policy.retry_delay_s * 2 ** (attempts - 1))


def decide(state: str, acted_request_id: str, request_id: str, *, has_outcome: bool) -> Decision:
    """What a rotation request may do, given its key's row (state and the request last acted on).

    - ``changed``: the key's number change happened; a redelivery of that request re-emits its
      outcome, any other request for the key is refused (never two changes for one day).
    - ``changing``: an attempt was interrupted; the carrier may have changed the number, so
      look before changing it again.
    - ``failed``: the same request again re-emits its failure; a new request (a retry) acts.
    """
    if state == "changed":
        return "replay" if acted_request_id == request_id else "refuse"
    if state == "changing":
        return "recover"
    if state == "failed" and acted_request_id == request_id and has_outcome:
        return "replay"
    return "act"

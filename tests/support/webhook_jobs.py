"""A claimed delivery as the webhook recorder receives it, for tests of what it writes."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.webhooks.claims import Job

CLAIMED_AT = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def job(correlationid: str = "corr-1") -> Job:
    """The third attempt at an ``sms.received`` delivery to ``acme-main``."""
    return Job(
        message_id="sms.received_0123abcd",
        endpoint_id="acme-main",
        reseller_id="acme",
        event_type="sms.received",
        correlationid=correlationid,
        body="{}",
        sequence=2,
        attempt=3,
        tries=1,
        started_at=CLAIMED_AT,
    )

"""How a webhook body writes a time, whichever flow sends it (the webhook consumer's deliveries,
the reseller portal's test send): RFC 3339 in UTC with a ``Z``, as EXTERNAL_APIS §3 shows and
reseller integrations parse."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

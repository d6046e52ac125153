"""Helix audit: ``helix.api_called`` → ``helix_api_logs`` (one row per call id).

Reads topic ``helix.calls``. Bodies, headers and the raw answer arrive already redacted by the
Helix client; bodies and headers are stored as jsonb (a body that was not JSON is kept as a JSON
string), the answer as the carrier sent it as text, with the run that made the call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from events.helix import HelixApiCalled
from events.topics import HELIX_CALLS, Topic
from projections.batches import Record

INSERT_CALLS = """
INSERT INTO helix_api_logs (call_id, operation, iccid, mobility_subscription_id, method, url,
    status_code, ok, duration_ms, request_body, response_body, error, called_at,
    request_headers, response_headers, response_text, run_id)
SELECT c, op, i, s, m, u, st, ok, d, req::jsonb, resp::jsonb, err, t, rqh::jsonb, rsh::jsonb,
    txt, run
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
    $8::bool[], $9::float8[], $10::text[], $11::text[], $12::text[], $13::timestamptz[],
    $14::text[], $15::text[], $16::text[], $17::text[])
    AS x(c, op, i, s, m, u, st, ok, d, req, resp, err, t, rqh, rsh, txt, run)
ON CONFLICT (call_id) DO NOTHING
"""


def _json(body: Any) -> str | None:
    return None if body is None else json.dumps(body, ensure_ascii=False)


class HelixLogProjection:
    name = "helix_log"
    topics: tuple[Topic, ...] = (HELIX_CALLS,)
    tables: tuple[str, ...] = ("helix_api_logs",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        calls = [r.event.data for r in records if isinstance(r.event, HelixApiCalled)]
        if not calls:
            return
        await conn.execute(
            INSERT_CALLS,
            [c.call_id for c in calls],
            [c.operation for c in calls],
            [c.iccid for c in calls],
            [c.mobility_subscription_id for c in calls],
            [c.method for c in calls],
            [c.url for c in calls],
            [c.status_code for c in calls],
            [c.ok for c in calls],
            [c.duration_ms for c in calls],
            [_json(c.request_body) for c in calls],
            [_json(c.response_body) for c in calls],
            [c.error for c in calls],
            [c.called_at for c in calls],
            [_json(c.request_headers) for c in calls],
            [_json(c.response_headers) for c in calls],
            [c.response_text for c in calls],
            [c.run_id for c in calls],
        )

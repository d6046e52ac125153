"""Pages an operator reads at a glance: deliveries name their SIM and number with short ids and
page on; a SIM's timeline shows each fact once and in words, not Python's; the overview says
what a skipped verification is."""

from __future__ import annotations

from datetime import timedelta

import pytest

from projections.read_models import PAGE_SIZE
from tests.integration import test_dashboard as base
from tests.integration.test_dashboard import NOW, Dash
from tests.support import dashboard_world as w

pytestmark = pytest.mark.integration
dash = base.dash  # the seeded dashboard of test_dashboard

INSERT_DELIVERY = """
INSERT INTO webhook_deliveries (message_id, endpoint, reseller_id, event_type, status, attempts,
                                created_at)
VALUES ($1, $2, 'acme', $3, 'delivered', 1, $4)
"""
ONLINE_ID = "number.online_" + "3f2a1b9c0d" + "e" * 54


async def test_deliveries_show_the_sim_and_number_with_short_ids(dash: Dash) -> None:
    async with dash.pool.acquire() as conn:
        await conn.execute(INSERT_DELIVERY, "m-number", w.ENDPOINT, "sms.received", NOW)
        await conn.execute(
            w.INSERT_EVENT,
            ONLINE_ID,
            "sim.lifecycle",
            7,
            "number.online",
            w.FAILED_VERIFY,
            "corr-online-x",
            NOW,
            {"data": {"iccid": w.FAILED_VERIFY, "number": "+15550100006"}},
        )
        await conn.execute(INSERT_DELIVERY, ONLINE_ID, w.ENDPOINT, "number.online", NOW)

    html = (await dash.http.get("/deliveries")).text

    sms_row = next(row for row in html.split("<tr") if 'title="m-number"' in row)
    assert f'href="/sims/{w.FEATURED}"' in sms_row
    assert w.NUMBER in sms_row  # the receiving number, its SIM resolved as on the SMS page
    online_row = next(row for row in html.split("<tr") if f'title="{ONLINE_ID}"' in row)
    assert f'href="/sims/{w.FAILED_VERIFY}"' in online_row
    assert "+15550100006" in online_row
    assert ">3f2a1b9c0d…<" in online_row
    assert f">{ONLINE_ID}<" not in html  # the 78-character id only in the title
    assert 'class="deliveries"' in html  # cells kept on one line (the stylesheet's rule)


async def test_deliveries_page_on_past_one_page(dash: Dash) -> None:
    async with dash.pool.acquire() as conn:
        await conn.executemany(
            INSERT_DELIVERY,
            [
                (f"page-{n}", w.ENDPOINT, "sms.received", NOW - timedelta(minutes=n))
                for n in range(PAGE_SIZE + 5)
            ],
        )

    first = (await dash.http.get("/deliveries")).text
    assert first.count('name="delivery"') == PAGE_SIZE
    assert 'rel="next"' in first


async def test_a_sim_timeline_shows_each_fact_once_in_words(dash: Dash) -> None:
    payload = {
        "source": "simfleet/helix",
        "data": {"ok": True, "operation": "activate", "retried": []},
    }
    async with dash.pool.acquire() as conn:
        for n, event_id in enumerate(("helix.api_called_aaa", "helix.api_called_bbb")):
            await conn.execute(
                w.INSERT_EVENT,
                event_id,
                "helix.calls",
                100 + n,
                "helix.api_called",
                w.FEATURED,
                "corr-twice",
                NOW - timedelta(minutes=5),
                payload,
            )

    html = (await dash.http.get(f"/sims/{w.FEATURED}")).text

    rows = [row for row in html.split("<tr") if "<b>operation</b> activate" in row]
    assert len(rows) == 1, "the same fact recorded twice is one row"
    assert "\u00d72" in rows[0]  # times two
    assert "<b>ok</b> yes" in rows[0]
    assert "True" not in html
    assert "[]" not in rows[0]


async def test_the_overview_explains_skipped_verifications(dash: Dash) -> None:
    await dash.pool.execute(
        "UPDATE sims SET number_status = 'skipped' WHERE iccid = $1", w.FAILED_VERIFY
    )

    html = (await dash.http.get("/")).text

    assert 'data-stat="verification_skipped">1<' in html
    assert 'id="skipped-explained"' in html
    assert "no other verified SIM was" in html
    api = (await dash.http.get("/api/overview")).json()
    assert api["verification_skipped"] == 1

"""The operator's controls in a real (headless) Chromium against simfleet running whole: the
request pressed in the page travels through Kafka, the workers and the sandboxes, and its
outcome comes back into the page through the projections.

One running system for the module (starting it costs a consumer-group join per worker); each
test works on SIMs, resellers and endpoints of its own. The pages do not refresh themselves, so
the tests reload them until the outcome shows, as an operator would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from sandbox.helix_world import make_iccid, make_imei
from simfleet.endpoints import Endpoints
from tests.conftest import fresh_database, isolated_settings, new_topic_prefix
from tests.support.eventually import eventually
from tests.support.live_site import LiveSite, live_settings, live_site

pytestmark = pytest.mark.browser

USER, PASSWORD = "operator", "live-Pa55-3c9e"
# a bound for outcomes that pass through Kafka, the workers and the projections (~1 s when idle),
# generous for a machine shared with other test runs
WITHIN_S = 30.0
T = TypeVar("T")


@pytest.fixture(scope="module")
async def live(server_url: str, template_url: str, kafka_bootstrap: str) -> AsyncIterator[LiveSite]:
    async with fresh_database(server_url) as database_url:
        base = isolated_settings(kafka_bootstrap, database_url, new_topic_prefix())
        settings = live_settings(base, dashboard_auth=f"{USER}:{PASSWORD}")
        async with live_site(settings, Endpoints(kafka_bootstrap, database_url)) as site:
            yield site


@dataclass
class Operator:
    url: str
    context: BrowserContext
    console_errors: list[str] = field(default_factory=list)

    async def page(self, path: str) -> Page:
        page = await self.context.new_page()
        page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        response = await page.goto(self.url + path)
        assert response is not None
        assert response.status == 200, path
        return page

    async def api(self, path: str, body: Any = None, *, csv: str | None = None) -> Any:
        """The dashboard's JSON API, with the operator's credentials: a POST when given a body."""
        if csv is not None:
            response = await self.context.request.post(
                self.url + path, data=csv, headers={"content-type": "text/csv"}
            )
        elif body is not None:
            response = await self.context.request.post(self.url + path, data=body)
        else:
            response = await self.context.request.get(self.url + path)
        assert response.ok, f"{path}: {response.status} {await response.text()}"
        return await response.json()


@pytest.fixture
async def operator(browser: Browser, live: LiveSite) -> AsyncIterator[Operator]:
    context = await browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1400, "height": 900},
    )
    try:
        operator = Operator(live.url, context)
        yield operator
        assert operator.console_errors == []  # a CSP violation would land here
    finally:
        await context.close()


async def reload_until(
    page: Page,
    read: Callable[[], Awaitable[T]],
    until: Callable[[T], bool] = bool,
    within: float = WITHIN_S,
) -> T:
    """Reloads ``page`` until what ``read`` finds on it satisfies ``until``."""

    async def reloaded() -> T:
        await page.reload()
        return await read()

    return await eventually(reloaded, until=until, within=within, interval=0.3)


def sim_row(page: Page, iccid: str) -> Locator:
    return page.locator("table.sims tbody tr").filter(has=page.get_by_role("link", name=iccid))


async def activated(live: LiveSite, operator: Operator, *rows: tuple[str, str, str]) -> None:
    """Imports ``(iccid, imei, reseller)`` rows through the API; returns once all are active
    with a number (the setup of a test about something else)."""
    lines = [f"{iccid},{imei},{reseller},pending\n" for iccid, imei, reseller in rows]
    sheet = "iccid,imei,reseller_id,status\n" + "".join(lines)
    summary = await operator.api("/api/import?filename=sims.csv", csv=sheet)
    iccids = [iccid for iccid, _, _ in rows]
    assert summary["accepted"] == iccids, summary
    await eventually(
        lambda: live.pool.fetchval(
            "SELECT count(*) FROM sims WHERE iccid = ANY($1::text[]) AND status = 'active' "
            "AND current_number IS NOT NULL",
            iccids,
        ),
        until=lambda n: n == len(rows),
        within=WITHIN_S,
    )


async def test_an_imported_csv_becomes_active_sims_with_numbers(
    live: LiveSite, operator: Operator, tmp_path: Path
) -> None:
    prefix = "890126071"
    iccids = [make_iccid(n, prefix) for n in (1, 2, 3)]
    sheet = tmp_path / "new-sims.csv"
    sheet.write_text(
        "iccid,imei,reseller_id,status\n"
        + "".join(f"{iccid},{make_imei(100 + n)},,pending\n" for n, iccid in enumerate(iccids))
    )
    page = await operator.page("/controls")
    await page.locator('input[type="file"]').set_input_files(sheet)
    await page.get_by_role("button", name="Import").click()
    await expect(page.locator("#import-summary")).to_contain_text("accepted 3")

    await page.goto(f"{live.url}/sims?q={prefix}")
    active = page.locator("table.sims tbody tr").filter(has=page.locator(".badge-active"))
    await reload_until(page, active.count, until=lambda n: n == len(iccids))

    await expect(page.locator("#matched")).to_have_text("3 SIMs match.")
    for iccid in iccids:
        number = sim_row(page, iccid).locator("td").nth(2)
        await expect(number).to_have_text(live.carrier_number(iccid))


async def test_rotate_gives_the_sim_a_new_number(live: LiveSite, operator: Operator) -> None:
    iccid = make_iccid(1, "890126072")
    await activated(live, operator, (iccid, make_imei(201), ""))
    old_number = live.carrier_number(iccid)
    page = await operator.page(f"/sims/{iccid}")
    number = page.locator("dl.facts dd").first
    await expect(number).to_contain_text(old_number)

    await page.get_by_role("button", name="rotate", exact=True).click()
    await expect(page.locator("h1")).to_have_text("rotate: 1 requested")
    await page.get_by_role("link", name=f"{iccid} timeline").click()

    shown = await reload_until(page, number.inner_text, until=lambda text: old_number not in text)
    new_number = live.carrier_number(iccid)
    assert new_number != old_number
    assert new_number in shown
    await expect(page.locator("table.timeline")).to_contain_text("mdn.changed")
    history = page.locator("h2:has-text('Number history') + table tbody tr")
    await expect(history.filter(has_text=old_number)).to_have_count(1)
    await expect(history.filter(has_text=new_number)).to_contain_text("current")


async def test_a_failed_webhook_resent_from_the_deliveries_page_is_delivered(
    live: LiveSite, operator: Operator
) -> None:
    reseller, endpoint = "acme-live", "acme-live-main"
    await operator.api("/api/resellers", {"reseller_id": reseller, "name": "Acme Live"})
    await eventually(
        lambda: operator.api("/api/resellers"),
        until=lambda found: reseller in [r["id"] for r in found],
        within=WITHIN_S,
    )
    issued = await operator.api(
        f"/api/resellers/{reseller}/endpoints",
        {"url": live.hook_url(endpoint), "event_types": ["sms.received"], "endpoint_id": endpoint},
    )
    live.receiver.register(endpoint, issued["secret"])
    live.receiver.set_mode(endpoint, "fail_500")  # the reseller's server is down
    await eventually(
        lambda: operator.api(f"/api/resellers/{reseller}/endpoints"),
        until=lambda found: endpoint in [e["endpoint_id"] for e in found],
        within=WITHIN_S,
    )
    iccid = make_iccid(1, "890126073")
    await activated(live, operator, (iccid, make_imei(301), reseller))

    body = "Your Acme code is 424242"
    fate = await live.network.text_from_outside("+15550104242", live.carrier_number(iccid), body)
    assert fate == "delivered"  # to the bridge, by the SIM's gateway port
    message_id = await eventually(
        lambda: live.pool.fetchval("SELECT message_id FROM inbound_sms WHERE body = $1", body),
        within=WITHIN_S,
    )

    page = await operator.page(f"/deliveries?endpoint={endpoint}")
    # a row shows the short id; the whole one is its title
    row = page.locator("tbody tr").filter(has=page.locator(f'[title="{message_id}"]'))
    await reload_until(page, row.locator(".badge-failed").count)
    await expect(row).to_contain_text("HTTP 500")

    live.receiver.set_mode(endpoint, "ok")  # the reseller fixed it
    await row.get_by_role("checkbox").check()
    await page.get_by_role("button", name="Resend selected").click()
    await expect(page.locator("h1")).to_have_text("resend: 1 requested")

    await page.get_by_role("link", name=reseller).click()
    # a row shows the short id; the whole one is its title
    row = page.locator("tbody tr").filter(has=page.locator(f'[title="{message_id}"]'))
    await reload_until(page, row.locator(".badge-delivered").count)
    delivered = [d for d in live.receiver.received(endpoint) if d.accepted]
    assert [(d.webhook_id, d.signature_valid) for d in delivered] == [(message_id, True)]
    assert delivered[0].payload["data"]["body"] == body

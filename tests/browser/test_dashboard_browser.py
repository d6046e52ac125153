"""The dashboard in a real (headless) Chromium: what an operator sees and clicks.

Runs against the same world as the integration tests (real Postgres seeded as the projections
would leave it, real broker). Leaves screenshots of the main pages in docs/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from pydantic import SecretStr

from dashboard.app import create_dashboard_app
from infra.bus import Bus
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from tests.support import dashboard_world as w
from tests.support.clock import ControlledClock

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` sets this to docs/screenshots; test runs leave the checked-in ones alone
SCREENSHOTS_ENV = "SIMFLEET_SCREENSHOTS"
USER, PASSWORD = "operator", "browser-Pa55-7d1c"
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # fixed, so the screenshots only change with the UI


@dataclass
class Site:
    url: str
    pool: asyncpg.Pool
    context: BrowserContext
    console_errors: list[str]

    async def page(self, path: str) -> Page:
        page = await self.context.new_page()
        page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        response = await page.goto(self.url + path)
        assert response is not None
        assert response.status == 200, path
        return page


@pytest.fixture
async def site(
    browser: Browser, settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[Site]:
    configured = settings.model_copy(
        update={"secrets": SecretsSettings(dashboard_auth=SecretStr(f"{USER}:{PASSWORD}"))}
    )
    pool = await create_pool(database_url)
    async with pool.acquire() as conn:
        await w.seed(conn, NOW)
    try:
        broker = build_broker(configured.kafka, kafka_bootstrap)
        async with broker:
            bus = Bus(broker, configured.kafka.topic_prefix)
            app = create_dashboard_app(configured, pool, bus, ControlledClock(NOW))
            async with serve_http(app) as url:
                context = await browser.new_context(
                    http_credentials={"username": USER, "password": PASSWORD},
                    viewport={"width": 1400, "height": 900},
                )
                try:
                    site = Site(url, pool, context, [])
                    yield site
                    assert site.console_errors == []  # a CSP violation would land here
                finally:
                    await context.close()
    finally:
        await pool.close()


async def test_the_overview_shows_live_stats(site: Site) -> None:
    page = await site.context.new_page()
    await page.clock.install()  # the refresh timer is driven by the test, not waited for
    await page.goto(site.url + "/")
    total = page.locator('[data-stat="total_sims"]')
    await expect(total).to_have_text(str(len(w.ALL_ICCIDS)))
    await expect(page.locator("html")).to_have_class("js")

    await site.pool.execute(
        "INSERT INTO sims (iccid, status) VALUES ('8901260000000099999', 'pending')"
    )
    await page.clock.run_for(11_000)

    await expect(total).to_have_text(str(len(w.ALL_ICCIDS) + 1))
    await expect(page.locator('[data-stat="status.pending"]')).to_have_text("2")


async def test_an_operator_finds_a_sim_and_reads_its_timeline(site: Site) -> None:
    page = await site.page("/sims")
    await page.get_by_placeholder("ICCID or number prefix").fill("555 010 0001")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#matched")).to_have_text("1 SIM match.")

    await page.get_by_role("link", name=w.FEATURED).click()

    await expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    timeline = page.locator("table.timeline")
    await expect(timeline).to_contain_text("number.online")
    await expect(timeline).to_contain_text("webhook.delivery_succeeded")
    await expect(page.get_by_text("G-666266 is your Google verification code")).to_be_visible()


async def test_from_a_timeline_to_who_asked_and_everything_they_did(site: Site) -> None:
    page = await site.page(f"/sims/{w.FEATURED}")
    await page.locator("table.timeline").get_by_role("link", name=w.IMPORTER).click()

    await expect(page.get_by_role("heading", name="Operator audit")).to_be_visible()
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("import")
    await page.get_by_role("link", name="clear").click()
    await expect(rows).to_have_count(4)
    await page.get_by_label("Action").select_option("cancel")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("returned by the customer")


async def test_select_all_then_cancel_needs_a_confirmed_reason(site: Site) -> None:
    page = await site.page("/sims?status=suspended")
    await page.locator("input.select-all").check()
    await expect(page.locator(f'input[name="iccid"][value="{w.SUSPENDED}"]')).to_be_checked()

    await page.get_by_role("button", name="cancel", exact=True).click()
    await expect(page.get_by_role("heading", name="Cancel 1 SIM?")).to_be_visible()
    await page.get_by_label("Reason").fill("returned by the reseller")
    await page.get_by_role("button", name="Yes, cancel").click()

    await expect(page.locator("h1")).to_have_text("cancel: 1 requested")
    await page.get_by_role("link", name=f"{w.SUSPENDED} timeline").click()
    await expect(page).to_have_url(f"{site.url}/sims/{w.SUSPENDED}#timeline")


async def test_an_uploaded_csv_is_summarised(site: Site, tmp_path: Path) -> None:
    sheet = tmp_path / "sims.csv"
    sheet.write_text(
        "iccid,imei,reseller_id,status\n"
        "89012600000000010002,356938035643809,acme,pending\n"
        "89012600000000010028,356938035643809,acme,pending\n"
        "8.9E+19,356938035643809,acme,pending\n"
    )
    page = await site.page("/controls")
    await page.locator('input[type="file"]').set_input_files(sheet)
    await page.get_by_role("button", name="Import").click()

    await expect(page.locator("#import-summary")).to_contain_text("accepted 2")
    await expect(page.locator("ul.issues")).to_contain_text("line 4")


async def test_a_wrong_password_is_refused(browser: Browser, site: Site) -> None:
    context = await browser.new_context(http_credentials={"username": USER, "password": "not-it"})
    try:
        page = await context.new_page()
        response = await page.goto(site.url + "/sims")
        assert response is not None
        assert response.status == 401
        assert w.FEATURED not in await page.content()
    finally:
        await context.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def saved_pages(directory: Path) -> set[str]:
    return {p.stem for p in directory.glob("*.png")}


async def test_screenshots_of_the_main_pages(site: Site, screenshots: Path) -> None:
    pages = {
        "overview": "/",
        "sims": "/sims",
        "sim": f"/sims/{w.FEATURED}",
        "sms": "/sms",
        "deliveries": "/deliveries",
        "helix": "/helix",
        "resellers": "/resellers",
        "controls": "/controls",
        "audit": "/audit",
    }
    for name, path in pages.items():
        page = await site.page(path)
        await page.screenshot(path=screenshots / f"{name}.png", full_page=True)
        await page.close()
    assert saved_pages(screenshots) >= set(pages)

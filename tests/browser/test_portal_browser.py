"""The reseller portal in a real (headless) Chromium: a reseller signs in with its token, reads
its numbers, SMS and a delivery's attempts, sends a test event, pauses, resumes and recovers;
a forged form (no CSRF token) and a read-only token change nothing.

The world is the integration tests' portal world: real broker, Postgres, projections, the webhook
consumer and the sandbox reseller receiver; the portal is mounted as the dashboard mounts it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, expect

from dashboard.app import create_dashboard_app
from dashboard.deps import template_environment
from dashboard.portal.app import PREFIX, create_portal_app
from dashboard.reseller_api.app import build_portal
from infra.clock import SystemClock
from infra.http import serve_http
from infra.settings import Settings
from tests.integration.test_dashboard import PASSWORD, USER, dashboard_settings
from tests.integration.test_reseller_api import numbered_sim
from tests.support.eventually import eventually
from tests.support.portal_world import GENEROUS, PortalWorld, portal_world
from tests.support.webhook_world import sms

pytestmark = pytest.mark.browser

ICCID, NUMBER = "8901260000000000001", "+15559870001"


@dataclass
class Portal:
    url: str
    world: PortalWorld
    context: BrowserContext
    console_errors: list[str]

    async def signed_in(self, token: str) -> Page:
        page = await self.context.new_page()
        page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        await page.goto(self.url + "/portal/login")
        await page.get_by_label("API token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Your numbers")).to_be_visible()
        return page


async def nav(page: Page, name: str) -> None:
    await page.get_by_role("navigation").get_by_role("link", name=name).click()


@pytest.fixture
async def portal(
    browser: Browser, settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[Portal]:
    async with portal_world(settings, kafka_bootstrap) as world:
        await world.world.reseller("acme", {"main": "500_then_ok"}, failures=1)
        await numbered_sim(world.world, ICCID, NUMBER, "acme")
        site = FastAPI()
        reseller_portal = build_portal(
            world.world.commands, box=world.world.box, webhooks=world.world.settings.webhooks,
            settings=GENEROUS, clock=SystemClock(), csrf_secret=secrets.token_bytes(32),
        )  # fmt: skip
        site.mount(PREFIX, create_portal_app(reseller_portal, template_environment()))
        async with world.world.consumer(), serve_http(site) as url:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            try:
                found = Portal(url, world, context, [])
                yield found
                assert found.console_errors == []
            finally:
                await context.close()


async def test_a_reseller_signs_in_reads_its_deliveries_and_tests_its_endpoint(
    portal: Portal,
) -> None:
    world = portal.world.world
    token = (await portal.world.token("acme", "alice")).token
    text = sms(NUMBER, "your code is 4411")
    await world.publish([text])
    await world.receiver.wait_for(1, timeout=30, endpoint_id="main")
    anonymous = await portal.context.new_page()
    await anonymous.goto(portal.url + "/portal/deliveries")
    await expect(anonymous).to_have_url(portal.url + "/portal/login")
    page = await portal.signed_in(token)

    await expect(page.get_by_role("cell", name=NUMBER)).to_be_visible()
    await expect(page.locator("header")).to_contain_text("acme · alice (read-write)")

    await page.get_by_role("link", name=NUMBER).click()
    await expect(page.get_by_role("heading", name="SMS received")).to_be_visible()
    await eventually(lambda: world.pool.fetchval(
        "SELECT count(*) FROM inbound_sms WHERE message_id = $1", text.id))  # fmt: skip
    await page.reload()
    await expect(page.get_by_text("your code is 4411")).to_be_visible()

    await nav(page, "Deliveries")
    await eventually(lambda: world.pool.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE message_id = $1", text.id),
        until=lambda n: n == 2)  # fmt: skip
    await page.reload()
    await page.locator("tbody tr").first.get_by_role("link").click()
    attempts = page.locator("table.attempts tbody tr")
    await expect(attempts).to_have_count(2)
    await expect(attempts.nth(0)).to_contain_text("HTTP 500")
    await expect(attempts.nth(1)).to_contain_text("HTTP 200")
    await expect(attempts.nth(1)).to_contain_text('{"ok":true}')

    await nav(page, "Endpoints")
    row = page.locator("#endpoint-main")
    await expect(row).to_contain_text("healthy")
    await row.get_by_role("button", name="Send test event").click()
    await expect(page.get_by_role("heading", name="Test event sent to main")).to_be_visible()
    await expect(page.locator("table.test-answer")).to_contain_text("HTTP 200")
    assert world.receiver.received("main")[-1].payload["event_type"] == "webhook.test"


async def test_a_reseller_pauses_resumes_and_recovers_what_it_missed(portal: Portal) -> None:
    world = portal.world.world
    page = await portal.signed_in((await portal.world.token("acme", "alice")).token)
    await nav(page, "Endpoints")
    row = page.locator("#endpoint-main")
    await row.get_by_role("button", name="Pause").click()
    await expect(page.get_by_role("heading", name="main paused")).to_be_visible()
    paused = sms(NUMBER, "while paused")
    await world.publish([paused])
    await eventually(lambda: world.pool.fetchval(
        "SELECT state FROM webhook_claims WHERE message_id = $1", paused.id),
        until=lambda state: state == "skipped")  # fmt: skip
    await nav(page, "Endpoints")
    await expect(row).to_contain_text("paused by reseller:acme/alice")
    await row.get_by_label("redeliver what it missed").uncheck()
    await row.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("heading", name="main resumed")).to_be_visible()
    await eventually(lambda: world.pool.fetchval(
        "SELECT enabled FROM reseller_webhooks WHERE endpoint_id = 'main'"))  # fmt: skip

    await nav(page, "Endpoints")
    await page.get_by_label("Resend what failed or was skipped since (UTC)").fill(
        "2020-01-01T00:00"
    )
    await page.get_by_role("button", name="Recover").click()
    await expect(page.get_by_role("heading", name="Recovery requested")).to_be_visible()
    await world.receiver.wait_for(1, endpoint_id="main", timeout=30)
    await eventually(lambda: world.pool.fetchval(
        "SELECT state FROM webhook_claims WHERE message_id = $1", paused.id),
        until=lambda state: state == "delivered")  # fmt: skip
    assert world.receiver.ids("main").count(paused.id) == 1


async def test_forged_forms_and_read_tokens_change_nothing(portal: Portal) -> None:
    world = portal.world.world
    reader = (await portal.world.token("acme", "viewer", "read")).token
    writer_token = await portal.world.token("acme", "writer")
    writer = writer_token.token

    page = await portal.signed_in(reader)
    await nav(page, "Endpoints")
    await expect(page.locator("#endpoint-main")).to_contain_text("read-only token")
    await expect(page.get_by_role("button", name="Pause")).to_have_count(0)

    page = await portal.signed_in(writer)  # the same browser: the cookie is now the writer's
    forged = await page.request.post(
        portal.url + "/portal/endpoints/main/pause", form={"csrf_token": "1.forged"}
    )
    assert forged.status == 403
    await nav(page, "Endpoints")
    await expect(page.locator("#endpoint-main")).to_contain_text("healthy")
    assert await world.pool.fetchval(
        "SELECT enabled FROM reseller_webhooks WHERE endpoint_id = 'main'"
    )

    await portal.world.tokens.revoke("acme", writer_token.token_id, "cli:test-operator")
    await eventually(
        lambda: page.goto(portal.url + "/portal/endpoints"),
        until=lambda _: page.url.endswith("/portal/login"),
    )
    await page.get_by_label("API token").fill("sfr_" + "x" * 43)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    # the refused sign-in is the one resource the browser saw fail
    assert [e for e in portal.console_errors if "401" in e] == portal.console_errors != []
    portal.console_errors.clear()


async def test_an_operator_issues_a_token_on_the_dashboard_and_the_reseller_signs_in_with_it(
    browser: Browser, settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    async with portal_world(settings, kafka_bootstrap) as world:
        await world.world.reseller("acme", {})
        await numbered_sim(world.world, ICCID, NUMBER, "acme")
        configured = dashboard_settings(world.world.settings)
        app = create_dashboard_app(configured, world.world.pool, world.world.bus, SystemClock())
        async with serve_http(app) as url:
            operator = await browser.new_context(
                http_credentials={"username": USER, "password": PASSWORD}
            )
            reseller = await browser.new_context()
            try:
                page = await operator.new_page()
                await page.goto(url + "/resellers")
                await page.get_by_role("link", name="API tokens").click()
                await page.get_by_label("Name").fill("support desk")
                await page.get_by_label("Scope").select_option("read")
                await page.get_by_role("button", name="Issue").click()
                await expect(page.get_by_role("heading", name="Token issued")).to_be_visible()
                token = await page.locator("code.token").inner_text()
                assert token.startswith("sfr_")

                portal_page = await reseller.new_page()
                await portal_page.goto(url + "/portal/login")
                # the token works once the projector recorded it
                await eventually(lambda: world.world.pool.fetchval(
                    "SELECT count(*) FROM reseller_tokens"))  # fmt: skip
                await portal_page.get_by_label("API token").fill(token)
                await portal_page.get_by_role("button", name="Sign in").click()
                await expect(portal_page.get_by_role("cell", name=NUMBER)).to_be_visible()

                await page.goto(url + "/resellers/acme/tokens")
                row = page.locator("table.tokens tbody tr").first
                await expect(row).to_contain_text("support desk")
                await row.get_by_label("reason to revoke support desk").fill("desk closed")
                await row.get_by_role("button", name="Revoke").click()
                await eventually(lambda: world.world.pool.fetchval(
                    "SELECT revoked_by FROM reseller_tokens"))  # fmt: skip
                await portal_page.reload()
                await expect(portal_page).to_have_url(url + "/portal/login")
                audit = await eventually(
                    lambda: world.world.pool.fetch("SELECT action, actor FROM operator_audit"),
                    until=lambda rows: len(rows) >= 2,
                )
                assert {(r["action"], r["actor"]) for r in audit} >= {
                    ("issue-token", f"dashboard:{USER}"), ("revoke-token", f"dashboard:{USER}"),
                }  # fmt: skip
            finally:
                await operator.close()
                await reseller.close()

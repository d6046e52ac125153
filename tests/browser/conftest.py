"""Browser tests: Playwright driving the system's Chromium (never Playwright's own download).

Chromium missing is a failure with the fix in the message, not a skip: ``make test`` installs
it (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# one Chromium for the session: every test works in its own context (cookies, storage), and a
# launch costs seconds on a busy machine
@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: it belongs to the dev dependency group")
    if not await asyncio.to_thread(CHROMIUM.is_file):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (as root: "
            "apt-get install -y chromium), or run `make browser-deps`"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()

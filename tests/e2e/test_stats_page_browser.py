"""The stats page in a real headless Chromium: log in, see the namespaces, reset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STATS = "/admin/django_tiercache/cachestats/"
PHONE = {"width": 375, "height": 740}

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser(admin_user: Any, live_server: Any) -> Iterator[Browser]:
    # The database and the server first: no ORM call may run in this thread while
    # Playwright's event loop is alive, and they are torn down after it is gone.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def _log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/admin/login/?next={STATS}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{STATS}")


def test_log_in_see_the_namespaces_and_reset(page: Page, live_server: Any) -> None:
    base = live_server.url
    # Sync views only: under WSGI an async view runs on a fresh event loop per request.
    for path in ("/user-and-provider/", "/user-and-provider/", "/accounts/"):
        assert page.goto(base + path).ok

    _log_in(page, base)

    assert page.title().startswith("Cache statistics")
    for namespace in ("user", "provider", "accounts"):
        assert page.locator(f'tr[data-namespace="{namespace}"]').is_visible()
    assert page.locator('tr[data-view="user-and-provider"]').count() == 1
    assert page.get_by_text("Redis", exact=True).first.is_visible()
    assert page.locator(".tc-redis").inner_text().find("reachable") >= 0

    # Readable on a phone: the page itself does not scroll sideways; wide tables do, inside.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1

    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Reset metrics").click()
    page.wait_for_load_state()

    assert page.get_by_text("reset in every process").is_visible()
    assert page.locator("tr[data-namespace]").count() == 0
    assert page.get_by_text("No cache lookups counted yet.").is_visible()


def test_the_admin_index_links_to_the_stats_page(page: Page, live_server: Any) -> None:
    _log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/")

    page.get_by_role("link", name="Cache statistics").first.click()

    page.wait_for_url(f"{live_server.url}{STATS}")
    assert page.locator("h1").inner_text() == "Cache statistics"

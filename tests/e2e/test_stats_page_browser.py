"""The stats page in a real headless Chromium: log in, see namespaces, charts, nodes, workers, reset.

Screenshots of the page at 1280 px and 375 px are kept in `artifacts/screenshots/`
(or `$TIERCACHE_ARTIFACTS/screenshots/`) for a person to look at.
"""

from __future__ import annotations

import os
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
ARTIFACTS = Path(
    os.environ.get("TIERCACHE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")
)
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


def _assert_the_node_table_shows(page: Page, redis_url: str) -> None:
    """The topology: the session's one Redis, its health and this process's breaker."""
    node = page.locator("table.tc-nodes tr[data-node]")
    assert node.count() == 1
    node.scroll_into_view_if_needed()
    assert node.is_visible()
    assert node.get_attribute("data-node") == redis_url.removeprefix("redis://").split("/")[0]
    assert node.get_attribute("data-role") == "primary"
    assert "healthy" in node.inner_text()
    assert "closed" in node.inner_text()


@pytest.mark.parametrize("width", [1280, 375])
def test_charts_workers_and_error_kinds_read_at_any_width(
    browser: Browser, live_server: Any, redis_url: str, width: int
) -> None:
    import redis
    from django.core.cache import cache

    from django_tiercache.metrics import metrics_for

    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    base = live_server.url
    try:
        for path in ("/user-and-provider/", "/accounts/", "/user-and-provider/", "/accounts/"):
            assert page.goto(base + path).ok
        with redis.Redis.from_url(redis_url) as client:
            client.set("dj::1:provider:13", b"not a signed pickle")
        assert cache.get("provider:13") is None  # corrupt: counted as an error
        metrics_for("default").push()  # what the pusher thread does every few seconds

        _log_in(page, base)

        charts = page.locator("figure[data-chart]")
        assert charts.count() == 4
        for index in range(4):
            chart = charts.nth(index)
            assert chart.is_visible()
            box = chart.locator("svg").bounding_box()
            assert box is not None
            assert 0 < box["width"] <= width
        assert page.locator('figure[data-chart="lookups"] svg rect').count() >= 1
        assert (
            page.locator(
                'figure[data-chart="hit-rate"] svg polyline, figure[data-chart="hit-rate"] svg circle'
            ).count()
            >= 1
        )

        worker = page.locator("tr[data-worker]")
        assert worker.count() == 1
        assert str(os.getpid()) in worker.inner_text()
        assert "stale" not in worker.inner_text()

        _assert_the_node_table_shows(page, redis_url)
        kind = page.locator('th[data-kind="CorruptData"]')
        kind.scroll_into_view_if_needed()
        assert kind.is_visible()  # a column a finger can reach, not a hover tooltip
        row = page.locator('tr[data-namespace="provider"]')
        assert row.locator("td.tc-kind").inner_text() == "1"

        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, "the page itself must not scroll sideways"

        page.evaluate("window.scrollTo(0, 0)")
        shots = ARTIFACTS / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / f"stats-page-{width}px.png"), full_page=True)
        page.locator(".tc-charts").screenshot(path=str(shots / f"charts-{width}px.png"))
        for table in ("tc-nodes", "tc-workers", "tc-namespaces"):
            page.evaluate(f"document.querySelector('.{table}').parentElement.scrollLeft = 0")
            page.locator(f".tc-scroll:has(.{table})").screenshot(
                path=str(shots / f"{table.removeprefix('tc-')}-{width}px.png")
            )
    finally:
        context.close()

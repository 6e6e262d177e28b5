"""The django-debug-toolbar panel lists each cache call with the tier that answered it."""

from __future__ import annotations

from django.core.cache import cache, caches
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from django_tiercache.metrics import metrics_for, request_scope
from django_tiercache.panel import TiercachePanel


class FakeStore:
    """What a panel needs of the toolbar's store: somewhere to save its stats."""

    def save_panel(self, request_id: str, panel_id: str, stats: dict[str, object]) -> None:
        self.saved = (request_id, panel_id, stats)


class FakeToolbar:
    """The parts of `debug_toolbar.toolbar.DebugToolbar` a panel touches (it needs the app
    installed, with its models and checks, which these tests' settings do not have)."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.request_id = "r1"
        self.stats: dict[str, dict[str, object]] = {}
        self.store = FakeStore()


def _toolbar_panel() -> tuple[TiercachePanel, HttpRequest]:
    def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    request = RequestFactory().get("/")
    return TiercachePanel(FakeToolbar(request), get_response), request


def test_the_panel_renders_each_call_with_its_tier_key_and_namespace() -> None:
    panel, request = _toolbar_panel()
    cache.set("user:1", {"name": "Ada"})
    cache.delete("user:2")

    panel.enable_instrumentation()
    try:
        cache.get("user:1")  # L1
        cache.get("user:2")  # miss
        cache.get_many(["user:1", "provider:7"])
    finally:
        panel.disable_instrumentation()
    panel.generate_stats(request, HttpResponse())

    html = panel.content
    calls = panel.get_stats()["calls"]
    assert [(c["method"], c["key"], c["namespace"], c["tier"]) for c in calls] == [
        ("get", "user:1", "user", "L1"),
        ("get", "user:2", "user", "miss"),
        ("get_many", "user:1, provider:7", "provider, user", "L1, miss"),
    ]
    assert calls[1]["redis_calls"] == 1
    assert 'data-tier="L1"' in html
    assert "<code>user:2</code>" in html
    assert panel.nav_subtitle.startswith("3 calls in ")


def test_watched_calls_still_count_in_the_request_and_the_metrics() -> None:
    panel, _ = _toolbar_panel()
    panel.enable_instrumentation()
    try:
        with request_scope() as scope:
            cache.get("user:9")
        assert scope.totals()["misses"] == 1
        cache.get("user:9")  # outside a request: straight to the process counters
    finally:
        panel.disable_instrumentation()

    assert "get" not in vars(caches["default"]), "the wrappers are gone"
    scope.commit("v")
    assert metrics_for("default").get_stats("user")["misses"] == 2

"""`views.metrics` and `TiercacheCollector`: Prometheus's own parser reads what we serve."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.test import Client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_tiercache.metrics import metrics_for
from django_tiercache.prometheus import METRIC_NAMES, TiercacheCollector
from tests.django_tiercache.test_multiprocess import _run_workers

URL = "/metrics"
TOKEN = "s3cret-scrape-token"


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _scrape(**headers: str) -> Any:
    return Client().get(URL, headers=headers)


def test_the_endpoint_is_closed_when_no_guard_is_set() -> None:
    assert _scrape().status_code == 404


def test_a_missing_or_wrong_token_is_refused(settings: Any) -> None:
    settings.TIERCACHE = {"METRICS_TOKEN": TOKEN}

    assert _scrape().status_code == 403
    assert _scrape(Authorization="Bearer nope").status_code == 403
    assert _scrape(Authorization=f"Bearer {TOKEN}").status_code == 200


def test_allowed_addresses_open_it_and_others_are_refused(settings: Any) -> None:
    settings.TIERCACHE = {"METRICS_ALLOWED_IPS": ["10.0.0.0/8", "127.0.0.1"]}

    assert Client(REMOTE_ADDR="127.0.0.1").get(URL).status_code == 200
    assert Client(REMOTE_ADDR="10.1.2.3").get(URL).status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.1").get(URL).status_code == 403


def test_with_both_guards_a_scrape_must_pass_both(settings: Any) -> None:
    settings.TIERCACHE = {"METRICS_TOKEN": TOKEN, "METRICS_ALLOWED_IPS": ["127.0.0.1"]}

    assert (
        Client(REMOTE_ADDR="192.168.1.1")
        .get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
        .status_code
        == 403
    )
    assert (
        Client(REMOTE_ADDR="127.0.0.1")
        .get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
        .status_code
        == 200
    )


def test_the_exposition_counts_lookups_by_tier_and_result(settings: Any) -> None:
    settings.TIERCACHE = {"METRICS_TOKEN": TOKEN}
    cache.get("user:secret-user-42")  # miss
    cache.set("user:secret-user-42", "x")
    cache.get("user:secret-user-42")  # L1 hit
    metrics_for("default").push()

    response = _scrape(Authorization=f"Bearer {TOKEN}")

    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    samples = _samples(body)
    labels = {"cache": "default", "namespace": "user"}
    assert (
        samples[
            (
                "tiercache_requests_total",
                tuple(sorted({**labels, "tier": "l1", "result": "hit"}.items())),
            )
        ]
        == 1
    )
    assert (
        samples[
            (
                "tiercache_requests_total",
                tuple(sorted({**labels, "tier": "none", "result": "miss"}.items())),
            )
        ]
        == 1
    )
    set_count = (
        "tiercache_operation_seconds_count",
        (("cache", "default"), ("operation", "set"), ("tier", "l2")),
    )
    assert samples[set_count] == 1
    assert samples[("tiercache_workers", (("cache", "default"),))] == 1
    assert samples[("tiercache_l1_entries", (("cache", "default"),))] == 1
    assert "secret-user-42" not in body, "labels never carry a key"


def test_every_family_is_exposed_with_help(settings: Any) -> None:
    settings.TIERCACHE = {"METRICS_TOKEN": TOKEN}
    cache.get("user:1")
    metrics_for("default").push()

    body = _scrape(Authorization=f"Bearer {TOKEN}").content.decode()

    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert set(families) == set(METRIC_NAMES)
    assert all(family.documentation for family in families.values())


def test_the_collector_registers_on_another_registry_without_reading_redis() -> None:
    registry = CollectorRegistry()  # auto-describe, as prometheus_client's default REGISTRY

    registry.register(TiercacheCollector(["default"]))

    assert {m.name for m in TiercacheCollector().describe()} == set(METRIC_NAMES)
    assert b"# TYPE tiercache_requests_total counter" in generate_latest(registry)


def test_the_figures_are_summed_over_worker_processes(redis_url: str) -> None:
    first, second = _run_workers(redis_url, 3, 5)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TiercacheCollector(["default"]))

    samples = _samples(generate_latest(registry).decode())

    key = (
        "tiercache_requests_total",
        (("cache", "default"), ("namespace", "provider"), ("result", "miss"), ("tier", "none")),
    )
    expected = first["stats"]["provider"]["misses"] + second["stats"]["provider"]["misses"]
    assert samples[key] == expected == 8
    assert samples[("tiercache_workers", (("cache", "default"),))] == 2


def test_a_breaker_outage_is_counted_once_and_its_state_shown_per_node(settings: Any) -> None:
    settings.TIERCACHE = {"METRICS_TOKEN": TOKEN}
    cache.get("user:1")
    breaker = cache.breaker  # type: ignore[attr-defined]
    for _ in range(breaker.failure_threshold + 4):  # an outage, then failed probes
        breaker.record_failure()
    assert not metrics_for("default").push()  # fails fast: the circuit is open
    breaker.record_success()
    metrics_for("default").push()

    samples = _samples(_scrape(Authorization=f"Bearer {TOKEN}").content.decode())

    outages = [v for (name, _), v in samples.items() if name == "tiercache_breaker_outages_total"]
    assert outages == [1]
    (node_labels,) = [
        dict(labels) for (name, labels) in samples if name == "tiercache_breaker_open"
    ]
    assert node_labels["node"].startswith("redis://")


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _exposed_names() -> set[str]:
    names = set()
    for family in TiercacheCollector().describe():
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def test_the_docs_cover_every_metric_name() -> None:
    text = (DOCS / "observability.md").read_text()

    missing = [name for name in sorted(_exposed_names()) if f"`{name}`" not in text]
    assert not missing


def test_the_grafana_dashboard_uses_only_exposed_names() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\btiercache_[a-z0-9_]+", expr)}
    known = _exposed_names() | {
        f"tiercache_operation_seconds_{part}" for part in ("bucket", "sum", "count")
    }

    assert used
    assert used <= known, used - known

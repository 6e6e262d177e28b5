"""`tiercache.otel.instrument`: the core's figures as OTel metrics, read by the SDK's reader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tiercache import AsyncTieredCache, TieredCache
from tiercache.otel import instrument


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def meter(provider: MeterProvider) -> Meter:
    return provider.get_meter("test")


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], float]]]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[tuple[dict[str, object], float]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:  # type: ignore[union-attr]
                    value = getattr(point, "value", None)
                    if value is None:  # a histogram point: its count
                        value = point.count  # type: ignore[union-attr]
                    points.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return points


def test_lookups_are_reported_by_tier_and_result(
    reader: InMemoryMetricReader, meter: Meter, redis_url: str
) -> None:
    cache = TieredCache.from_url(redis_url)
    instrument(cache, name="sessions", meter=meter)
    cache.get("user:1")  # miss
    cache.set("user:1", "Ada")
    cache.get("user:1")  # L1 hit

    points = _points(reader)

    requests = {(a["tier"], a["result"]): v for a, v in points["tiercache.requests"]}
    assert requests[("l1", "hit")] == 1
    assert requests[("none", "miss")] == 1
    assert all(
        a["cache"] == "sessions" and a["namespace"] == "user"
        for a, _ in points["tiercache.requests"]
    )
    assert points["tiercache.l1_entries"] == [({"cache": "sessions"}, 1)]
    ((node, opened),) = points["tiercache.breaker_open"]
    assert opened == 0
    assert str(node["node"]).startswith("redis://")


def test_errors_and_outages_are_reported(reader: InMemoryMetricReader, meter: Meter) -> None:
    cache = TieredCache.from_url("redis://127.0.0.1:1/0", connect_timeout=0.05)
    instrument(cache, name="down", meter=meter)
    for _ in range(5):
        cache.get("user:1")

    points = _points(reader)

    kinds = {a["kind"]: v for a, v in points["tiercache.errors"]}
    assert sum(kinds.values()) == 5
    assert "CircuitOpen" in kinds
    assert points["tiercache.breaker_outages"] == [({"cache": "down"}, 1)]
    assert points["tiercache.breaker_open"][0][1] == 1


def test_the_counts_are_read_at_collection_time(reader: InMemoryMetricReader, meter: Meter) -> None:
    # Observable instruments only: the SDK calls back at collection time.
    cache = TieredCache.from_url(None)
    instrument(cache, meter=meter)
    cache.set("user:1", "x")
    for _ in range(100):
        cache.get("user:1")

    requests = {(a["tier"], a["result"]): v for a, v in _points(reader)["tiercache.requests"]}
    assert requests[("l1", "hit")] == 100


async def test_redis_round_trips_are_timed_by_operation(
    reader: InMemoryMetricReader, meter: Meter, redis_url: str
) -> None:
    cache = AsyncTieredCache.from_url(redis_url)
    instrument(cache, name="async", meter=meter)
    try:
        await cache.set("user:1", "Ada")
        await cache.get("user:2")  # a miss: one read
        await cache.get("user:1")  # an L1 hit: not timed
    finally:
        await cache.aclose()

    points = _points(reader)

    timed = {a["operation"]: n for a, n in points["tiercache.operation"]}
    assert timed["get"] == 1
    assert sum(timed.values()) == 2
    assert all(
        a["tier"] == "l2" and a["cache"] == "async" for a, _ in points["tiercache.operation"]
    )

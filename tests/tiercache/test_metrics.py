"""CacheMetrics: counts per namespace and tier, hit rate, resets, threads; and via a cache."""

from __future__ import annotations

import threading

import pytest
import redis
from returns.result import Success

from tests.tiercache.conftest import MakeCache
from tiercache import CacheMetrics, CacheMetricsProtocol, NamespaceStats

ZERO = NamespaceStats(
    hits=0, l1_hits=0, l2_hits=0, misses=0, errors=0, total_requests=0, hit_rate=0.0
)


def test_cache_metrics_implements_the_protocol() -> None:
    assert isinstance(CacheMetrics(), CacheMetricsProtocol)


def test_an_unseen_namespace_has_zero_stats() -> None:
    metrics = CacheMetrics()
    assert metrics.get_stats("user") == ZERO
    assert metrics.get_all_stats() == {}


def test_hits_are_counted_per_tier_and_summed() -> None:
    metrics = CacheMetrics()
    metrics.record_hit("user")  # L1 by default
    metrics.record_hit("user", "l1")
    metrics.record_hit("user", "l2")
    metrics.record_miss("user")
    stats = metrics.get_stats("user")
    assert (stats["l1_hits"], stats["l2_hits"], stats["hits"]) == (2, 1, 3)
    assert (stats["misses"], stats["total_requests"]) == (1, 4)
    assert stats["hit_rate"] == pytest.approx(0.75)


def test_namespaces_are_counted_apart() -> None:
    metrics = CacheMetrics()
    metrics.record_hit("user")
    metrics.record_miss("order")
    metrics.record_miss("order")
    all_stats = metrics.get_all_stats()
    assert list(all_stats) == ["order", "user"]
    assert all_stats["user"]["hits"] == 1
    assert all_stats["order"]["misses"] == 2
    assert all_stats["order"]["hit_rate"] == 0.0


def test_errors_count_by_kind_and_as_lookups_that_did_not_hit() -> None:
    metrics = CacheMetrics()
    metrics.record_error("user", "CacheTimeout")
    metrics.record_error("user", "CacheTimeout")
    metrics.record_error("user", "CorruptData")
    metrics.record_error("order")
    assert metrics.get_stats("user")["errors"] == 3
    assert metrics.get_stats("user")["total_requests"] == 3
    assert metrics.get_stats("user")["hit_rate"] == 0.0
    assert metrics.get_error_kinds() == {
        "order": {"CacheError": 1},
        "user": {"CacheTimeout": 2, "CorruptData": 1},
    }


def test_hit_rate_counts_errors_as_lookups_that_did_not_hit() -> None:
    # During an outage the hit rate must fall, not rise (issue 12).
    metrics = CacheMetrics()
    for _ in range(3):
        metrics.record_hit("user", "l2")
    metrics.record_miss("user")
    metrics.record_error("user")
    assert metrics.get_stats("user")["hit_rate"] == pytest.approx(0.6)


def test_reset_of_one_namespace_leaves_the_others() -> None:
    metrics = CacheMetrics()
    metrics.record_hit("user")
    metrics.record_error("user", "CacheTimeout")
    metrics.record_hit("order")
    metrics.record_error("order", "CorruptData")
    metrics.reset("user")
    assert metrics.get_stats("user") == ZERO
    assert list(metrics.get_all_stats()) == ["order"]
    assert metrics.get_error_kinds() == {"order": {"CorruptData": 1}}


def test_reset_of_everything_zeroes_every_namespace() -> None:
    metrics = CacheMetrics()
    metrics.record_hit("user")
    metrics.record_miss("order")
    metrics.record_error("order")
    metrics.reset()
    assert metrics.get_all_stats() == {}
    assert metrics.get_error_kinds() == {}
    assert metrics.get_stats("order") == ZERO


def test_returned_stats_are_a_snapshot_not_a_live_view() -> None:
    metrics = CacheMetrics()
    metrics.record_hit("user")
    stats = metrics.get_stats("user")
    metrics.record_hit("user")
    assert stats["hits"] == 1


def test_concurrent_recording_loses_no_count() -> None:
    metrics = CacheMetrics()
    start = threading.Barrier(8)

    def record() -> None:
        start.wait()
        for _ in range(2000):
            metrics.record_hit("user", "l1")
            metrics.record_hit("user", "l2")
            metrics.record_miss("user")
            metrics.record_error("user", "CacheTimeout")
            metrics.get_all_stats()

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = metrics.get_stats("user")
    assert (stats["l1_hits"], stats["l2_hits"], stats["misses"], stats["errors"]) == (
        16_000,
        16_000,
        16_000,
        16_000,
    )
    assert metrics.get_error_kinds() == {"user": {"CacheTimeout": 16_000}}


# -- through a real cache --------------------------------------------------------------


@pytest.mark.parametrize("colour", ["sync", "async"])
async def test_a_cache_counts_l2_fills_then_l1_hits_under_the_key_namespace(
    redis_url: str, make_cache: MakeCache, colour: str
) -> None:
    writer = await make_cache("l2", "sync", redis_url)
    await writer.set("user:1", "alice")
    cache = await make_cache("l1l2", colour, redis_url)
    assert await cache.get("user:1") == Success("alice")  # from Redis, fills L1
    assert await cache.get("user:1") == Success("alice")  # from L1
    assert await cache.get("user:1") == Success("alice")
    assert await cache.get("user:2") == Success(None)
    assert await cache.get("order:1") == Success(None)
    stats = cache.cache.metrics.get_all_stats()
    assert stats["user"] == NamespaceStats(
        hits=3, l1_hits=2, l2_hits=1, misses=1, errors=0, total_requests=4, hit_rate=0.75
    )
    assert stats["order"]["misses"] == 1


@pytest.mark.parametrize("colour", ["sync", "async"])
async def test_a_cache_reports_into_the_metrics_it_was_given(
    redis_url: str, make_cache: MakeCache, colour: str
) -> None:
    shared = CacheMetrics()
    first = await make_cache("l1l2", colour, redis_url, metrics=shared)
    second = await make_cache("l1", colour, None, metrics=shared)
    await first.get("user:1")
    await second.set("user:1", "x")
    await second.get("user:1")
    assert shared.get_stats("user")["misses"] == 1
    assert shared.get_stats("user")["l1_hits"] == 1
    assert first.cache.metrics is shared


@pytest.mark.parametrize("colour", ["sync", "async"])
async def test_keys_without_a_separator_count_under_the_default_namespace(
    make_cache: MakeCache, colour: str
) -> None:
    cache = await make_cache("l1", colour, None)
    await cache.get("plain")
    await cache.get("user:1")
    assert cache.cache.metrics.get_stats("default")["misses"] == 1
    assert cache.cache.metrics.get_stats("user")["misses"] == 1


@pytest.mark.parametrize("colour", ["sync", "async"])
async def test_the_namespace_separator_is_configurable(make_cache: MakeCache, colour: str) -> None:
    cache = await make_cache("l1", colour, None, namespace_separator="/")
    await cache.get("user/1")
    await cache.get("user:1")
    stats = cache.cache.metrics.get_all_stats()
    assert stats["user"]["misses"] == 1
    assert stats["default"]["misses"] == 1


@pytest.mark.parametrize("colour", ["sync", "async"])
async def test_a_cache_counts_errors_by_kind_under_the_key_namespace(
    redis_url: str, make_cache: MakeCache, colour: str
) -> None:
    cache = await make_cache("l1l2", colour, redis_url)
    with redis.Redis.from_url(redis_url) as client:
        client.set("tc:user:1", b"\xff")
    await cache.get("user:1")
    await cache.set("user:2", "v", ttl=-1)
    await cache.increment("order:1", 1.5)  # type: ignore[arg-type]
    assert cache.cache.metrics.get_error_kinds() == {  # type: ignore[attr-defined]
        "order": {"NotAnInteger": 1},
        "user": {"CorruptData": 1, "InvalidTTL": 1},
    }

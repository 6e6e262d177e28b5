"""The metrics store: per-request scopes, process counters, pushes into Redis, resets."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator

import pytest
import redis

from django_tiercache import counters
from django_tiercache.aggregation import RedisCounterStore
from django_tiercache.metrics import AliasMetrics, RequestScope, metrics_for, request_scope
from tests.redis_server import RedisServer
from tiercache import CacheMetricsProtocol, CircuitBreaker
from tiercache.commands import EXPIRE, operation_of
from tiercache.redis_tier import RedisTier
from tiercache.settings import RedisSettings
from tiercache.topology import StandaloneTopology

KEY = "tiercache:metrics:{test}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_tiers: list[RedisTier] = []


@pytest.fixture(autouse=True)
def _close_tiers() -> Iterator[None]:
    yield
    while _tiers:
        _tiers.pop().close()


def _tier(url: str, breaker: CircuitBreaker | None = None) -> RedisTier:
    tier = RedisTier(StandaloneTopology(RedisSettings(url)), breaker or CircuitBreaker())
    _tiers.append(tier)
    return tier


def _metrics(
    url: str,
    clock: FakeClock | None = None,
    interval: float = 5.0,
    breaker: CircuitBreaker | None = None,
) -> AliasMetrics:
    metrics = AliasMetrics("default", push_interval=interval, timer=clock or FakeClock())
    metrics.connect(RedisCounterStore(_tier(url, breaker).execute, KEY))
    return metrics


def _redis_counts(url: str) -> dict[str, int]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return {name: int(value) for name, value in client.hgetall(KEY).items()}


def test_metrics_implement_the_core_protocol(redis_url: str) -> None:
    assert isinstance(_metrics(redis_url), CacheMetricsProtocol)


def test_metrics_for_returns_one_object_per_alias() -> None:
    assert metrics_for("default") is metrics_for("default")


def test_caches_on_one_redis_with_other_options_keep_their_own_metrics(
    settings: object, redis_url: str
) -> None:
    from tests.django_tiercache.django_setup import tiered_caches

    before = metrics_for("default")
    settings.CACHES = tiered_caches(redis_url, L1_MAXSIZE=5)  # type: ignore[attr-defined]

    assert metrics_for("default") is not before


def test_counts_outside_a_request_reach_the_process_counters_at_once(redis_url: str) -> None:
    metrics = _metrics(redis_url)

    metrics.record_hit("user", "l1")
    metrics.record_hit("user", "l2")
    metrics.record_miss("user")
    metrics.record_error("provider", "CacheTimeout")

    assert metrics.get_stats("user") == {
        "hits": 2,
        "l1_hits": 1,
        "l2_hits": 1,
        "misses": 1,
        "errors": 0,
        "total_requests": 3,
        "hit_rate": 2 / 3,
    }
    assert metrics.get_stats("provider")["errors"] == 1
    assert metrics.get_error_kinds() == {"provider": {"CacheTimeout": 1}}
    assert metrics.get_stats("nothing")["total_requests"] == 0


def test_counts_inside_a_request_scope_wait_for_the_commit(redis_url: str) -> None:
    metrics = _metrics(redis_url)

    with request_scope() as scope:
        metrics.record_miss("user")
        metrics.record_hit("user")
        metrics.record_error("user", "CorruptData")
        assert metrics.snapshot() == {}
    scope.commit("app:profile")

    assert metrics.snapshot() == {
        "ns|user|misses": 1,
        "ns|user|l1_hits": 1,
        "ns|user|errors": 1,
        "err|user|CorruptData": 1,
        "view|app:profile|user|misses": 1,
        "view|app:profile|user|l1_hits": 1,
        "view|app:profile|user|errors": 1,
        "req|app:profile": 1,
    }


def test_a_scope_keeps_each_aliases_counts_apart(redis_url: str) -> None:
    one, two = _metrics(redis_url), AliasMetrics("two")

    with request_scope() as scope:
        one.record_miss("user")
        two.record_hit("user")
    touched = scope.commit(None)

    assert set(touched) == {one, two}
    assert one.get_stats("user")["misses"] == 1
    assert two.get_stats("user")["hits"] == 1
    assert two.snapshot()["req|(unresolved)"] == 1


def test_a_scope_counts_every_hit_of_threads_sharing_it() -> None:
    # More hits per thread than a scope lists before folding: folds race the appends.
    metrics, per_thread = AliasMetrics("threads"), RequestScope.FOLD_AT + 1000

    def hit() -> None:
        for _ in range(per_thread):
            metrics.record_hit("user")

    with request_scope() as scope:
        run_in_scope = [contextvars.copy_context().run for _ in range(2)]
        threads = [threading.Thread(target=run, args=(hit,)) for run in run_in_scope]
        for thread in threads:
            thread.start()
        hit()
        for thread in threads:
            thread.join()
    scope.commit("v")

    assert metrics.snapshot()["ns|user|l1_hits"] == 3 * per_thread
    assert metrics.snapshot()["view|v|user|l1_hits"] == 3 * per_thread


def test_reset_of_one_namespace_keeps_the_others(redis_url: str) -> None:
    metrics = _metrics(redis_url)
    with request_scope() as scope:
        metrics.record_miss("user")
        metrics.record_miss("provider")
    scope.commit("v")

    metrics.reset("user")

    assert set(metrics.get_all_stats()) == {"provider"}
    assert counters.view_stats(metrics.snapshot())[0].namespaces.keys() == {"provider"}


def test_a_push_adds_the_deltas_into_redis_once(redis_url: str) -> None:
    metrics = _metrics(redis_url)
    metrics.record_miss("user")
    metrics.record_hit("user", "l2")

    assert metrics.push()
    assert metrics.push()  # nothing new: nothing added twice

    assert _redis_counts(redis_url) == {"ns|user|misses": 1, "ns|user|l2_hits": 1}


def test_a_push_is_due_only_once_the_interval_has_passed(redis_url: str) -> None:
    clock = FakeClock()
    metrics = _metrics(redis_url, clock, interval=5.0)

    assert not metrics.push_due
    clock.now += 5.0
    assert metrics.push_due
    metrics.push()
    assert not metrics.push_due


def test_an_open_breaker_stops_pushes_without_touching_redis(redis_url: str) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=3600)
    metrics = _metrics(redis_url, breaker=breaker)
    metrics.record_miss("user")
    breaker.record_failure()  # the cache found its Redis sick

    assert not metrics.push()

    assert _redis_counts(redis_url) == {}
    breaker.record_success()
    assert metrics.push()
    assert _redis_counts(redis_url) == {"ns|user|misses": 1}


def test_processes_add_up_and_each_reads_the_sum(redis_url: str) -> None:
    first, second = _metrics(redis_url), _metrics(redis_url)
    first.record_miss("user")
    second.record_miss("user")
    second.record_hit("user")

    site = first.site_view()

    assert site.site_wide
    assert site.counts["ns|user|misses"] == 1  # the second has not pushed yet
    second.push()
    assert first.site_view().counts["ns|user|misses"] == 2
    assert first.site_view().counts["ns|user|l1_hits"] == 1


def test_a_failed_push_keeps_the_deltas_for_the_next_one(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    metrics = _metrics(private_redis.url, clock)
    metrics.record_miss("user")
    private_redis.kill()

    with caplog.at_level(logging.WARNING, logger="django_tiercache.metrics"):
        assert not metrics.push()
        assert not metrics.push()
    assert len(caplog.records) == 1, "one warning per interval, not one per attempt"
    assert "cannot add metrics" in caplog.records[0].getMessage()

    private_redis.restart()
    metrics.record_miss("user")
    metrics.push()  # the breaker may still be open after the failures: one more try
    assert metrics.push() or metrics.push()
    assert _redis_counts(private_redis.url) == {"ns|user|misses": 2}


def test_without_redis_the_site_figures_are_this_processes(private_redis: RedisServer) -> None:
    metrics = _metrics(private_redis.url)
    metrics.record_miss("user")
    private_redis.kill()

    site = metrics.site_view()

    assert not site.site_wide
    assert site.counts == {"ns|user|misses": 1}
    assert site.problem
    assert "unreachable" in site.problem or "circuit" in site.problem


def test_without_a_location_the_figures_stay_local() -> None:
    metrics = AliasMetrics("memory")
    metrics.record_miss("user")

    assert not metrics.push()
    assert metrics.site_view().counts == {"ns|user|misses": 1}
    assert not metrics.site_view().site_wide


def test_a_reset_drops_what_other_processes_counted_before_it(redis_url: str) -> None:
    first, second = _metrics(redis_url), _metrics(redis_url)
    first.record_miss("user")
    second.record_miss("user")
    first.push()
    second.push()
    second.record_miss("user")  # counted before the reset, pushed after it

    assert first.reset_site() is None
    second.push()

    assert first.site_view().counts == {}
    assert second.get_all_stats() == {}
    second.record_hit("user")
    second.push()
    assert first.site_view().counts == {"ns|user|l1_hits": 1}


def test_a_reset_while_redis_is_down_says_so(private_redis: RedisServer) -> None:
    metrics = _metrics(private_redis.url)
    metrics.record_miss("user")
    private_redis.kill()

    problem = metrics.reset_site()

    assert problem
    assert "unreachable" in problem
    assert metrics.get_all_stats() == {}


@pytest.mark.parametrize("name", ["user", "a|b", "50%", "%7C", "app:view|x"])
def test_field_names_round_trip_any_text(name: str) -> None:
    assert counters.split(counters.join("view", name, name, "misses")) == [
        "view",
        name,
        name,
        "misses",
    ]


def test_latency_is_counted_per_tier_and_operation_in_buckets(redis_url: str) -> None:
    metrics = _metrics(redis_url)

    metrics.record_latency("l2", "get", 0.0003)
    metrics.record_latency("l2", "get", 0.0004)

    histogram = counters.tier_latencies(metrics.snapshot())[("l2", "get")]
    assert histogram[counters.bucket_of(0.0003)] == 2
    assert histogram[counters.LATENCY_SUM] == 700  # microseconds


def test_redis_requests_are_labelled_by_command_or_script() -> None:
    assert operation_of(("GET", "k")) == "get"
    assert operation_of(("EVALSHA", EXPIRE.sha, 1, "k")) == "expire"
    assert operation_of([("GET", "a"), ("GET", "b")]) == "pipeline"


def test_quantiles_interpolate_inside_a_bucket() -> None:
    assert counters.quantile({}, 0.5) is None
    middle = counters.quantile({counters.bucket_of(0.0003): 10}, 0.5)
    assert middle is not None
    assert 0.00025 < middle < 0.0005


def test_a_push_fills_the_minute_and_the_workers_report(redis_url: str) -> None:
    metrics = AliasMetrics("default")
    metrics.connect(
        RedisCounterStore(_tier(redis_url).execute, KEY),
        lambda: ({"l1_entries": 7}, {counters.EVICTIONS: 3}),
    )
    metrics.record_hit("user", "l1")
    metrics.record_miss("user")
    metrics.record_latency("l2", "get", 0.0002)

    assert metrics.push()
    site = metrics.site_view()

    assert len(site.minutes) == 60
    _, now = site.minutes[-1]
    assert (now["l1_hits"], now["misses"]) == (1, 1)
    assert now[counters.join("lat", str(counters.bucket_of(0.0002)))] == 1
    (report,) = site.workers.values()
    assert report["l1_entries"] == 7
    assert site.counts["proc|evictions"] == 3


def test_event_totals_are_pushed_as_deltas(redis_url: str) -> None:
    totals = {counters.INVALIDATIONS: 5}
    metrics = AliasMetrics("default")
    metrics.connect(RedisCounterStore(_tier(redis_url).execute, KEY), lambda: ({}, dict(totals)))

    metrics.push()
    totals[counters.INVALIDATIONS] = 8
    metrics.push()

    assert _redis_counts(redis_url)["proc|invalidations"] == 8


def test_a_reset_notes_its_time_and_empties_the_series(redis_url: str) -> None:
    metrics = _metrics(redis_url)
    metrics.record_miss("user")
    metrics.push()

    assert metrics.reset_site() is None
    site = metrics.site_view()

    assert site.reset_at is not None
    assert all(not row for _, row in site.minutes)


def test_hit_rate_counts_errors_as_lookups_that_did_not_hit() -> None:
    stats = counters.stats_of({"l1_hits": 3, "misses": 1, "errors": 4})

    assert stats["total_requests"] == 8
    assert stats["hit_rate"] == 3 / 8
    assert counters.hit_rate_text(stats) == "37.5%"
    assert counters.hit_rate_text(counters.stats_of({})) == "—"

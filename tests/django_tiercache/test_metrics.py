"""The metrics store: per-request scopes, process counters, pushes into Redis, resets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from django_tiercache import counters
from django_tiercache.aggregation import RedisCounterSink
from django_tiercache.metrics import AliasMetrics, metrics_for, request_scope
from tests.redis_server import RedisServer
from tiercache import CacheMetricsProtocol

KEY = "tiercache:metrics:test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _metrics(url: str, clock: FakeClock | None = None, interval: float = 5.0) -> AliasMetrics:
    sink = RedisCounterSink(url, KEY)
    return AliasMetrics("default", sink, push_interval=interval, timer=clock or FakeClock())


def _redis_counts(url: str) -> dict[str, int]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return {name: int(value) for name, value in client.hgetall(KEY).items()}


def test_metrics_implement_the_core_protocol(redis_url: str) -> None:
    assert isinstance(_metrics(redis_url), CacheMetricsProtocol)


def test_metrics_for_returns_one_object_per_alias() -> None:
    assert metrics_for("default") is metrics_for("default")
    assert metrics_for("default") is not metrics_for("other")


def test_a_settings_change_of_caches_starts_afresh(settings: Any, redis_url: str) -> None:
    before = metrics_for("default")
    settings.CACHES = {**settings.CACHES}

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
    one, two = _metrics(redis_url), AliasMetrics("two", None)

    with request_scope() as scope:
        one.record_miss("user")
        two.record_hit("user")
    touched = scope.commit(None)

    assert set(touched) == {one, two}
    assert one.get_stats("user")["misses"] == 1
    assert two.get_stats("user")["hits"] == 1
    assert two.snapshot()["req|(unresolved)"] == 1


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


def test_pushes_happen_only_once_the_interval_has_passed(redis_url: str) -> None:
    clock = FakeClock()
    metrics = _metrics(redis_url, clock, interval=5.0)
    metrics.record_miss("user")

    metrics.push_if_due()
    assert _redis_counts(redis_url) == {}

    clock.now += 5.0
    metrics.push_if_due()
    assert _redis_counts(redis_url) == {"ns|user|misses": 1}


def test_processes_add_up_and_each_reads_the_sum(redis_url: str) -> None:
    first, second = _metrics(redis_url), _metrics(redis_url)
    first.record_miss("user")
    second.record_miss("user")
    second.record_hit("user")

    site = first.site_counts()

    assert site.site_wide
    assert site.counts["ns|user|misses"] == 1  # the second has not pushed yet
    second.push()
    assert first.site_counts().counts["ns|user|misses"] == 2
    assert first.site_counts().counts["ns|user|l1_hits"] == 1


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
    assert metrics.push()
    assert _redis_counts(private_redis.url) == {"ns|user|misses": 2}


def test_without_redis_the_site_figures_are_this_processes(private_redis: RedisServer) -> None:
    metrics = _metrics(private_redis.url)
    metrics.record_miss("user")
    private_redis.kill()

    site = metrics.site_counts()

    assert not site.site_wide
    assert site.counts == {"ns|user|misses": 1}
    assert site.problem
    assert "unreachable" in site.problem


def test_without_a_location_the_figures_stay_local() -> None:
    metrics = AliasMetrics("memory", None)
    metrics.record_miss("user")

    assert not metrics.push()
    assert metrics.site_counts().counts == {"ns|user|misses": 1}
    assert not metrics.site_counts().site_wide


def test_a_reset_drops_what_other_processes_counted_before_it(redis_url: str) -> None:
    first, second = _metrics(redis_url), _metrics(redis_url)
    first.record_miss("user")
    second.record_miss("user")
    first.push()
    second.push()
    second.record_miss("user")  # counted before the reset, pushed after it

    assert first.reset_site() is None
    second.push()

    assert first.site_counts().counts == {}
    assert second.get_all_stats() == {}
    second.record_hit("user")
    second.push()
    assert first.site_counts().counts == {"ns|user|l1_hits": 1}


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

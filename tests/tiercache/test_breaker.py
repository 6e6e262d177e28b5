"""The circuit breaker: closed, open, half-open and closed again, on a fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.redis_server import RedisServer
from tests.tiercache.support import FakeClock, build, close, failure_of, success_of
from tiercache import (
    AsyncTieredCache,
    CacheUnavailable,
    CircuitBreaker,
    CircuitOpen,
    TieredCache,
    resilience_stats,
)


class Recorder:
    """Counts the recoveries a breaker announces."""

    def __init__(self) -> None:
        self.recoveries = 0

    def __call__(self) -> None:
        self.recoveries += 1


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_timeout=2.0, timer=clock)


def test_circuit_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        breaker.record_failure()
        assert breaker.state == "closed"
        assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.times_opened == 1


def test_probe_now_lets_one_probe_through_before_the_cool_down(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.record_failure()
    assert not breaker.allow()
    breaker.probe_now()  # a Sentinel named a new master: try it without waiting
    assert breaker.allow()
    assert not breaker.allow()


def test_a_success_between_failures_keeps_the_circuit_closed(breaker: CircuitBreaker) -> None:
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.failures == 0


def test_open_circuit_lets_exactly_one_probe_through_after_the_cool_down(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(1.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else while it is out
    assert not breaker.allow()


def test_successful_probe_closes_the_circuit_and_announces_recovery(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    recorder = Recorder()
    breaker.on_recover(recorder)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(2.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert recorder.recoveries == 1
    breaker.record_success()  # already closed: no second announcement
    assert recorder.recoveries == 1


def test_failed_probe_reopens_for_another_cool_down(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(2.0)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.times_opened == 2
    clock.advance(1.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


# -- the breaker in front of a real, killed Redis ------------------------------------


@pytest.fixture
def warm_cache(private_redis: RedisServer, clock: FakeClock) -> Iterator[TieredCache]:
    # No invalidation: the only L1 clear on recovery is then the breaker's own.
    cache = TieredCache.from_url(
        private_redis.url, timer=clock, invalidation=False, l1_ttl=None, breaker_reset=2.0
    )
    assert success_of(cache.set("warm", "held")) is None
    yield cache
    cache.close()


def _counters(client: redis.Redis) -> tuple[int, int]:
    """Return the commands and connections the server has seen so far."""
    stats = client.info("stats")
    return int(stats["total_commands_processed"]), int(stats["total_connections_received"])


def test_killed_redis_opens_the_breaker_then_calls_fail_fast_without_network(
    warm_cache: TieredCache, private_redis: RedisServer
) -> None:
    private_redis.kill()
    errors = [failure_of(warm_cache.get(f"cold:{n}")) for n in range(3)]
    assert all(type(error) is CacheUnavailable for error in errors)
    assert warm_cache.breaker is not None
    assert warm_cache.breaker.state == "open"

    # Redis is back, but the circuit stays open until the cool-down: no command reaches it.
    private_redis.start()
    with redis.Redis.from_url(private_redis.url) as observer:
        _counters(observer)
        idle = _counters(observer)
        started = time.perf_counter()
        for n in range(1000):
            assert isinstance(failure_of(warm_cache.get(f"cold:{n}")), CircuitOpen)
        elapsed = time.perf_counter() - started
        after = _counters(observer)
    assert after == (idle[0] + 1, idle[1])  # only the observer's own INFO
    assert elapsed < 1.0  # generous: measured figures are in docs/operations.md

    # What L1 holds is still served while the circuit is open.
    assert success_of(warm_cache.get("warm")) == "held"


def test_recovery_probe_closes_the_breaker_and_clears_l1(
    warm_cache: TieredCache, private_redis: RedisServer, clock: FakeClock
) -> None:
    private_redis.kill()
    for n in range(3):
        failure_of(warm_cache.get(f"cold:{n}"))
    private_redis.start()  # empty: what we held may be long gone elsewhere
    assert warm_cache.l1 is not None
    assert warm_cache.l1.get("tc:warm") == "held"

    clock.advance(2.0)
    assert success_of(warm_cache.get("cold:0")) is None  # the probe reaches Redis
    assert warm_cache.breaker is not None
    assert warm_cache.breaker.state == "closed"
    assert len(warm_cache.l1) == 0
    assert success_of(warm_cache.get("warm")) is None


async def test_async_cache_shares_the_breaker_of_its_server(
    private_redis: RedisServer, clock: FakeClock
) -> None:
    sync = build("sync", private_redis.url, timer=clock)
    asynchronous = build("async", private_redis.url, timer=clock)
    assert isinstance(sync, TieredCache)
    assert isinstance(asynchronous, AsyncTieredCache)
    try:
        assert sync.breaker is asynchronous.breaker
        private_redis.kill()
        for n in range(3):
            failure_of(await asynchronous.get(f"cold:{n}"))
        assert isinstance(failure_of(sync.get("cold:x")), CircuitOpen)
        assert isinstance(failure_of(await asynchronous.get("cold:x")), CircuitOpen)
    finally:
        await close(sync)
        await close(asynchronous)


def test_resilience_stats_report_breaker_transitions(
    warm_cache: TieredCache, private_redis: RedisServer, clock: FakeClock
) -> None:
    stats = resilience_stats(warm_cache)
    assert stats["breaker_state"] == "closed"
    assert stats["bus_state"] == "off"  # invalidation=False
    private_redis.kill()
    failure_of(warm_cache.get("cold"))
    assert resilience_stats(warm_cache)["breaker_failures"] == 1
    for _ in range(2):
        failure_of(warm_cache.get("cold"))
    stats = resilience_stats(warm_cache)
    assert (stats["breaker_state"], stats["breaker_times_opened"]) == ("open", 1)
    clock.advance(2.0)
    assert resilience_stats(warm_cache)["breaker_state"] == "half_open"


def test_l1_only_cache_has_no_breaker() -> None:
    cache = TieredCache.from_url(None)
    assert cache.breaker is None
    assert resilience_stats(cache)["breaker_state"] == "none"

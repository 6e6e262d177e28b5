"""The backend's get_or_set/aget_or_set: Django's contract, computed once per missing key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from tiercache import resilience_stats
from tiercache.stampede import LOCK_PREFIX


class Counting:
    """A default callable that counts its calls."""

    def __init__(self, value: Any, delay: float = 0.0) -> None:
        self.value, self.delay, self.calls = value, delay, 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.value


def test_get_or_set_takes_a_value_or_a_callable_and_stores_it() -> None:
    cache = caches["default"]
    assert cache.get_or_set("plain", 42) == 42
    assert cache.get("plain") == 42
    made = Counting({"rows": [1, 2]})
    assert cache.get_or_set("computed", made) == {"rows": [1, 2]}
    assert cache.get_or_set("computed", made) == {"rows": [1, 2]}
    assert made.calls == 1


def test_get_or_set_stores_none_as_django_does() -> None:
    cache = caches["default"]
    assert cache.get_or_set("null", None) is None
    assert cache.get("null", "default") is None
    assert cache.get_or_set("null", Counting("not called")) is None


def test_timeout_zero_computes_without_storing() -> None:
    cache = caches["default"]
    assert cache.get_or_set("now", "value", timeout=0) == "value"
    assert cache.get("now") is None


def test_the_callables_exception_reaches_the_caller_and_nothing_is_stored() -> None:
    cache = caches["default"]

    def broken() -> Any:
        raise LookupError("no such row")

    with pytest.raises(LookupError, match="no such row"):
        cache.get_or_set("k", broken)
    assert cache.get("k") is None


def test_threads_of_one_process_compute_a_missing_key_once() -> None:
    made = Counting("shared", delay=0.05)
    barrier = threading.Barrier(16)

    def call(_: int) -> Any:
        barrier.wait()
        return caches["default"].get_or_set("cold", made)  # one backend instance per thread

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(call, range(16))) == ["shared"] * 16
    assert made.calls == 1


async def test_aget_or_set_calls_the_callable_and_stores_its_value(
    close_loop_clients: None,
) -> None:
    cache = caches["default"]
    made = Counting([1, 2, 3])
    assert await cache.aget_or_set("k", made) == [1, 2, 3]
    assert await cache.aget_or_set("k", made) == [1, 2, 3]
    assert made.calls == 1
    assert cache.get("k") == [1, 2, 3]


def test_get_or_set_lock_option_guards_the_computation_in_redis(
    use_caches: Callable[..., None], redis_url: str
) -> None:
    use_caches(redis_url, GET_OR_SET_LOCK=True)
    cache = caches["default"]
    held: list[int] = []
    with redis.Redis.from_url(redis_url) as raw:

        def peek() -> str:
            held.append(len(raw.keys(LOCK_PREFIX + "*")))
            return "v"

        assert cache.get_or_set("k", peek) == "v"
        assert held == [1]
        assert raw.keys(LOCK_PREFIX + "*") == []


def test_bad_stampede_options_are_reported_as_misconfiguration(
    use_caches: Callable[..., None], redis_url: str
) -> None:
    use_caches(redis_url, STALE_TTL=-1.0)
    with pytest.raises(ImproperlyConfigured, match="stale_ttl"):
        caches["default"].get_or_set("k", 1)


def test_backend_reports_breaker_and_bus_state() -> None:
    cache = caches["default"]
    cache.set("k", 1)
    stats = resilience_stats(cache)
    assert stats["breaker_state"] == "closed"
    assert stats["bus_state"] == "up"

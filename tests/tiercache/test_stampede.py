"""get_or_set: one loader call per key, the Redis lock, stale-while-revalidate, fail-safe."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from returns.result import Result, Success

import tiercache
from tests.redis_server import RedisServer
from tests.tiercache.support import CacheUnderTest, FakeClock, build, close, failure_of, success_of
from tiercache import (
    AsyncTieredCache,
    CacheError,
    InvalidKey,
    InvalidTTL,
    LoaderFailed,
    NotSerializable,
    TieredCache,
)
from tiercache.commands import RELEASE_LOCK
from tiercache.drivers import drive, drive_async
from tiercache.singleflight import LEADING, SingleFlight
from tiercache.stampede import LOCK_PREFIX, Load


class Loader:
    """A loader for either colour that counts its calls and can wait, block or fail."""

    def __init__(
        self, value: Any = "computed", *, delay: float = 0.0, error: Exception | None = None
    ) -> None:
        self.value, self.delay, self.error = value, delay, error
        self.calls = 0
        self._lock = threading.Lock()
        self.started = threading.Event()
        self.release = threading.Event()
        self.blocking = False

    def _count(self) -> None:
        with self._lock:
            self.calls += 1
        self.started.set()

    def _result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def __call__(self) -> Any:
        self._count()
        time.sleep(self.delay)
        if self.blocking:
            self.release.wait(5)
        return self._result()

    async def coroutine(self) -> Any:
        self._count()
        await asyncio.sleep(self.delay)
        while self.blocking and not self.release.is_set():
            await asyncio.sleep(0.005)
        return self._result()


async def get_or_set(
    under: CacheUnderTest | TieredCache | AsyncTieredCache,
    key: str,
    loader: Loader,
    ttl: int | None = None,
    **options: Any,
) -> Result[Any, CacheError]:
    """Call get_or_set on a cache of either colour."""
    cache = under.cache if isinstance(under, CacheUnderTest) else under
    if isinstance(cache, AsyncTieredCache):
        return await cache.get_or_set(key, loader.coroutine, ttl, **options)
    return cache.get_or_set(key, loader, ttl, **options)


async def at_once(
    under: CacheUnderTest, calls: int, key: str, loader: Loader, ttl: int | None = None, **kw: Any
) -> list[Result[Any, CacheError]]:
    """Call get_or_set `calls` times at once: threads for sync, tasks for async."""
    cache = under.cache
    if isinstance(cache, AsyncTieredCache):
        return list(
            await asyncio.gather(*(get_or_set(under, key, loader, ttl, **kw) for _ in range(calls)))
        )
    barrier = threading.Barrier(calls)

    def call() -> Result[Any, CacheError]:
        barrier.wait()
        assert isinstance(cache, TieredCache)
        return cache.get_or_set(key, loader, ttl, **kw)

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(lambda _: call(), range(calls)))


async def in_background(under: CacheUnderTest, key: str, loader: Loader, **kw: Any) -> Any:
    """Start a get_or_set that runs until `loader.release` is set; return its handle."""
    if isinstance(under.cache, AsyncTieredCache):
        return asyncio.create_task(get_or_set(under, key, loader, **kw))
    results: list[Result[Any, CacheError]] = []
    thread = threading.Thread(
        target=lambda: results.append(asyncio.run(get_or_set(under, key, loader, **kw)))
    )
    thread.start()
    return thread, results


async def finished(handle: Any) -> Result[Any, CacheError]:
    if isinstance(handle, asyncio.Task):
        result: Result[Any, CacheError] = await handle
        return result
    thread, results = handle
    thread.join(5)
    return results[0]  # type: ignore[no-any-return]


async def started(loader: Loader) -> None:
    for _ in range(1000):
        if loader.started.is_set():
            return
        await asyncio.sleep(0.005)
    pytest.fail("the loader never started")


# -- one call per key ------------------------------------------------------------------


async def test_concurrent_callers_of_a_missing_key_call_the_loader_once(
    cache: CacheUnderTest,
) -> None:
    loader = Loader(delay=0.15)  # every caller arrives meanwhile, on a loaded machine too
    results = await at_once(cache, 16, "cold", loader, 60)
    assert loader.calls == 1
    assert [success_of(result) for result in results] == ["computed"] * 16
    assert success_of(await cache.get("cold")) == "computed"


async def test_a_cached_value_is_served_without_calling_the_loader(cache: CacheUnderTest) -> None:
    success_of(await cache.set("warm", "held"))
    loader = Loader()
    assert success_of(await get_or_set(cache, "warm", loader)) == "held"
    assert loader.calls == 0


async def test_a_failing_loader_fails_every_waiter_once_then_is_retried(
    cache: CacheUnderTest,
) -> None:
    loader = Loader(delay=0.15, error=RuntimeError("database down"))
    results = await at_once(cache, 8, "cold", loader, 60)
    assert loader.calls == 1
    errors = [failure_of(result) for result in results]
    assert all(isinstance(error, LoaderFailed) for error in errors)
    assert isinstance(errors[0].__cause__, RuntimeError)
    assert "'cold'" in str(errors[0])  # the caller's key, not the prefixed one
    assert errors[0].key == "cold"
    assert cache.cache._assembly.stampede.joins == 7  # the figure metrics export
    assert success_of(await get_or_set(cache, "cold", Loader("later"), 60)) == "later"
    assert cache.cache.metrics.get_error_kinds()["default"]["LoaderFailed"] == 1  # type: ignore[attr-defined]


async def test_loader_asking_for_its_own_key_computes_alone_instead_of_deadlocking(
    cache: CacheUnderTest,
) -> None:
    inner = Loader("inner")
    outer_calls = []

    def outer() -> str:
        outer_calls.append(1)
        assert isinstance(cache.cache, TieredCache)
        return success_of(cache.cache.get_or_set("k", inner, 60)) + "+outer"  # type: ignore[no-any-return]

    async def outer_async() -> str:
        outer_calls.append(1)
        assert isinstance(cache.cache, AsyncTieredCache)
        return success_of(await cache.cache.get_or_set("k", inner.coroutine, 60)) + "+outer"  # type: ignore[no-any-return]

    if isinstance(cache.cache, AsyncTieredCache):
        result = await cache.cache.get_or_set("k", outer_async, 60)
    else:
        result = cache.cache.get_or_set("k", outer, 60)
    assert success_of(result) == "inner+outer"
    assert (len(outer_calls), inner.calls) == (1, 1)


async def test_cancelled_async_leader_hands_the_key_to_a_waiter(redis_url: str) -> None:
    cache = build("async", redis_url)
    assert isinstance(cache, AsyncTieredCache)
    try:
        slow = Loader(delay=5)
        leader = asyncio.create_task(cache.get_or_set("k", slow.coroutine, 60))
        await started(slow)
        quick = Loader("second")
        follower = asyncio.create_task(cache.get_or_set("k", quick.coroutine, 60))
        await asyncio.sleep(0.02)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert success_of(await follower) == "second"
        assert quick.calls == 1
    finally:
        await close(cache)


async def test_bad_arguments_are_failures_that_name_the_cause(cache: CacheUnderTest) -> None:
    loader = Loader()
    assert isinstance(failure_of(await get_or_set(cache, "", loader)), InvalidKey)
    assert isinstance(failure_of(await get_or_set(cache, "k", loader, 0)), InvalidTTL)
    assert isinstance(failure_of(await get_or_set(cache, "k", loader, stale_ttl=-1)), InvalidTTL)
    assert isinstance(failure_of(await get_or_set(cache, "k", loader, jitter=1.5)), InvalidTTL)
    assert loader.calls == 0
    not_text = Loader(value=42)
    assert isinstance(failure_of(await get_or_set(cache, "k", not_text, 60)), NotSerializable)


def test_singleflight_lets_a_sync_caller_wait_for_an_async_leader() -> None:
    flights = SingleFlight()

    async def lead() -> None:
        assert await flights.ajoin("k") == (LEADING, True)
        waiter = threading.Thread(target=lambda: seen.append(flights.join("k")))
        waiter.start()
        await asyncio.sleep(0.02)
        assert waiter.is_alive()
        flights.finish("k", "outcome")
        waiter.join(1)

    seen: list[tuple[object, bool]] = []
    asyncio.run(lead())
    assert seen == [("outcome", False)]
    assert len(flights) == 0


# -- the cross-process lock --------------------------------------------------------------


@pytest.fixture
def raw(l2_cache: CacheUnderTest) -> redis.Redis:
    """Return a plain redis-py client of the Redis behind `l2_cache`, whatever its topology."""
    assert l2_cache.redis is not None
    return l2_cache.redis


async def test_lock_held_elsewhere_makes_the_caller_take_the_holders_value(
    l2_cache: CacheUnderTest, raw: redis.Redis
) -> None:
    raw.set(LOCK_PREFIX + "tc:k", "their-token", px=5000)
    loader = Loader("ours")
    handle = await in_background(l2_cache, "k", loader, ttl=60, lock=True)
    await asyncio.sleep(0.05)
    raw.set("tc:k", "theirs", px=60_000)  # the other process stores its value...
    raw.delete(LOCK_PREFIX + "tc:k")  # ...and releases the lock
    assert success_of(await finished(handle)) == "theirs"
    assert loader.calls == 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"stale_ttl": 5}, "old"), ({"fail_safe": 30}, "theirs")],
    ids=["revalidating", "fail-safe"],
)
async def test_stale_key_locked_elsewhere_is_served_stale_only_while_revalidating(
    l2_cache: CacheUnderTest, raw: redis.Redis, options: dict[str, Any], expected: str
) -> None:
    success_of(await get_or_set(l2_cache, "k", Loader("old"), 10, **options))
    l2_cache.let_time_pass(11)
    raw.set(LOCK_PREFIX + "tc:k", "their-token", px=5000)  # another process is refreshing
    loader = Loader("ours")
    handle = await in_background(l2_cache, "k", loader, ttl=10, lock=True, **options)
    await asyncio.sleep(0.15)  # it has read the stale value meanwhile, on a loaded machine too
    raw.set("tc:k", "theirs", px=60_000)
    raw.delete(LOCK_PREFIX + "tc:k")
    assert success_of(await finished(handle)) == expected
    assert loader.calls == 0


async def test_lock_is_taken_and_released_by_its_owner(
    l2_cache: CacheUnderTest, raw: redis.Redis
) -> None:
    seen = []

    def peek() -> str:
        seen.append(raw.get(LOCK_PREFIX + "tc:k"))
        return "computed"

    if isinstance(l2_cache.cache, AsyncTieredCache):

        async def peek_async() -> str:
            return peek()

        result = await l2_cache.cache.get_or_set("k", peek_async, 60, lock=True)
    else:
        result = l2_cache.cache.get_or_set("k", peek, 60, lock=True)
    assert success_of(result) == "computed"
    assert seen[0] is not None  # held while the loader ran
    assert raw.exists(LOCK_PREFIX + "tc:k") == 0  # released after


def test_lock_release_deletes_only_the_owners_lock(raw: redis.Redis) -> None:
    raw.set("lock", "mine")
    assert raw.eval(RELEASE_LOCK.source, 1, "lock", "someone-else") == 0
    assert raw.get("lock") == b"mine"
    assert raw.eval(RELEASE_LOCK.source, 1, "lock", "mine") == 1
    assert raw.exists("lock") == 0


async def test_too_slow_lock_holder_is_given_up_on(redis_url: str) -> None:
    cache = TieredCache.from_url(redis_url, lock_timeout=0.2)
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.set(LOCK_PREFIX + "tc:k", "stuck", px=10_000)
        loader = Loader()
        started_at = time.monotonic()
        assert success_of(cache.get_or_set("k", loader, 60, lock=True)) == "computed"
        assert time.monotonic() - started_at >= 0.2
        assert loader.calls == 1
    finally:
        cache.close()
        raw.close()


# -- stale-while-revalidate, fail-safe, jitter -------------------------------------------


async def test_stale_value_is_served_while_exactly_one_caller_refreshes_it(
    cache: CacheUnderTest,
) -> None:
    assert success_of(await get_or_set(cache, "k", Loader("old"), 10, stale_ttl=5)) == "old"
    cache.let_time_pass(11)  # past its freshness, within its stale window
    refresher = Loader("new")
    refresher.blocking = True
    handle = await in_background(cache, "k", refresher, ttl=10, stale_ttl=5)
    await started(refresher)
    others = Loader("unused")
    for _ in range(3):
        assert success_of(await get_or_set(cache, "k", others, 10, stale_ttl=5)) == "old"
    refresher.release.set()
    assert success_of(await finished(handle)) == "new"
    assert success_of(await get_or_set(cache, "k", others, 10, stale_ttl=5)) == "new"
    assert (refresher.calls, others.calls) == (1, 0)
    assert cache.cache._assembly.stampede.stale_served == 3  # the figure metrics export


async def test_value_past_its_stale_window_is_recomputed(cache: CacheUnderTest) -> None:
    success_of(await get_or_set(cache, "k", Loader("old"), 10, stale_ttl=5))
    cache.let_time_pass(16)
    assert success_of(await get_or_set(cache, "k", Loader("new"), 10, stale_ttl=5)) == "new"


async def test_fail_safe_serves_the_stale_value_when_the_loader_fails(
    cache: CacheUnderTest,
) -> None:
    success_of(await get_or_set(cache, "k", Loader("old"), 10, fail_safe=30))
    cache.let_time_pass(12)
    broken = Loader(error=RuntimeError("source down"))
    assert success_of(await get_or_set(cache, "k", broken, 10, fail_safe=30)) == "old"
    assert broken.calls == 1  # it was tried: fail-safe is not stale-while-revalidate
    cache.let_time_pass(30)  # past the fail-safe bound
    assert isinstance(
        failure_of(await get_or_set(cache, "k", broken, 10, fail_safe=30)), LoaderFailed
    )


@pytest.mark.parametrize("layout", ["l2", "l1l2"])
async def test_fail_safe_serves_the_stale_value_while_redis_is_down(
    private_redis: RedisServer, clock: FakeClock, layout: str
) -> None:
    cache = TieredCache.from_url(
        private_redis.url, timer=clock, l1_maxsize=0 if layout == "l2" else 100
    )
    try:
        success_of(cache.get_or_set("k", Loader("old"), 10, fail_safe=30))
        private_redis.kill()
        clock.advance(12)
        loader = Loader("new")
        assert success_of(cache.get_or_set("k", loader, 10, fail_safe=30)) == "old"
        assert loader.calls == 0  # no stampede on the source while Redis is down
        clock.advance(30)
        assert success_of(cache.get_or_set("k", loader, 10, fail_safe=30)) == "new"
        assert loader.calls == 1
    finally:
        cache.close()


async def test_redis_down_still_gives_the_loaders_value(private_redis: RedisServer) -> None:
    cache = TieredCache.from_url(private_redis.url)
    try:
        private_redis.kill()
        assert success_of(cache.get_or_set("k", Loader("fresh"), 10)) == "fresh"
        assert "CacheUnavailable" in cache.metrics.get_error_kinds()["default"]  # type: ignore[attr-defined]
    finally:
        cache.close()


async def test_jitter_spreads_the_expiry_of_keys_written_together(
    l2_cache: CacheUnderTest, raw: redis.Redis
) -> None:
    for n in range(20):
        success_of(await get_or_set(l2_cache, f"k{n}", Loader(), 100, jitter=0.5))
    ttls = [raw.pttl(f"tc:k{n}") for n in range(20)]
    assert all(49_000 <= ttl <= 100_000 for ttl in ttls)
    assert len({ttl // 1000 for ttl in ttls}) > 3


# -- one driver loop per colour ------------------------------------------------------------


def test_only_the_two_driver_loops_run_flows() -> None:
    """get_or_set's extra effects are handlers in the shared loops, not loops of their own."""
    root = Path(tiercache.__file__).parent.parent
    for package in ("tiercache", "django_tiercache"):
        for module in (root / package).rglob("*.py"):
            if module.name != "drivers.py":
                source = module.read_text()
                # `.send(None)` only starts a coroutine; answering a flow sends it a reply.
                assert re.search(r"\.(send|throw)\((?!None\))", source) is None, module


async def test_an_effect_is_answered_by_its_handler_in_either_loop() -> None:
    def flow() -> Generator[object, object, Result[object, CacheError]]:
        loaded = yield Load()
        stored = yield ("SET", "k", "v")
        return Success((loaded, stored))

    sync_effects = {Load: lambda _: "loaded"}

    async def load(_: Load) -> str:
        return "loaded"

    async def execute(request: object) -> str:
        return "OK"

    assert drive(flow(), lambda request: "OK", sync_effects) == Success(("loaded", "OK"))
    assert await drive_async(flow(), execute, {Load: load}) == Success(("loaded", "OK"))

"""Helpers for the tiercache tests: a fake clock, and one cache in either colour.

`CacheUnderTest` gives a `TieredCache` and an `AsyncTieredCache` the same awaitable
interface, so one contract suite runs over both colours and every tier layout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
from returns.result import Failure, Result, Success

from tiercache import AsyncTieredCache, CacheError, TieredCache

#: The 15 methods of `CacheProtocol` and `SyncCacheProtocol`.
METHOD_NAMES = (
    "get",
    "get_json",
    "set",
    "set_json",
    "delete",
    "exists",
    "expire",
    "ttl",
    "increment",
    "decrement",
    "flush",
    "ping",
    "delete_pattern",
    "get_many",
    "set_many",
)

#: Tier layouts: L1 only, L2 only, L1 ahead of L2.
LAYOUTS = ("l1", "l2", "l1l2")
COLOURS = ("sync", "async")
#: Redis topologies besides standalone, each started once per run (tests/redis_topology.py).
TOPOLOGIES = ("sentinel", "cluster")
STANDALONE_CONFIGS = tuple(f"{layout}-{colour}" for layout in LAYOUTS for colour in COLOURS)
L2_CONFIGS = tuple(
    f"{config}{suffix}"
    for suffix in ("", *(f"-{topology}" for topology in TOPOLOGIES))
    for config in STANDALONE_CONFIGS
    if not config.startswith("l1-")
)
ALL_CONFIGS = (*[c for c in STANDALONE_CONFIGS if c.startswith("l1-")], *L2_CONFIGS)


class FakeClock:
    """A timer that moves only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = self.start = start

    def wall(self) -> float:
        """Return real Unix time moved on by as much as this clock was: a cache's `clock`.

        Values in Redis carry wall-clock expiry times; `let_time_pass` shortens their
        Redis TTLs, and this keeps both views of time in step.
        """
        return time.time() + (self.now - self.start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: The default timeouts fail fast by design; on a loaded test machine, opening dozens of
#: connections at once can take longer, and these tests are not about timeouts.
_PATIENT = {"connect_timeout": 5.0, "socket_timeout": 5.0}


def layout_options(layout: str, url: str | None) -> dict[str, Any]:
    """Return the `from_url` arguments of one tier layout."""
    if layout == "l1":
        # An L1-only cache is the store itself: no cap, so "no TTL" means none.
        return {"url": None, "l1_ttl": None}
    if layout == "l2":
        return {"url": url, "l1_maxsize": 0, **_PATIENT}
    return {"url": url, "l1_ttl": 60.0, **_PATIENT}


def build(colour: str, url: str | None, **options: Any) -> TieredCache | AsyncTieredCache:
    """Build a cache of one colour."""
    shell = TieredCache if colour == "sync" else AsyncTieredCache
    built: TieredCache | AsyncTieredCache = shell.from_url(url, **options)
    return built


async def close(cache: TieredCache | AsyncTieredCache) -> None:
    """Release a cache's connections."""
    if isinstance(cache, TieredCache):
        cache.close()
    else:
        await cache.aclose()


@dataclass
class CacheUnderTest:
    """One cache behind an awaitable interface, with the means to look underneath it."""

    cache: TieredCache | AsyncTieredCache
    colour: str
    layout: str
    clock: FakeClock
    redis: redis.Redis | None
    url: str | None
    options: dict[str, Any]
    _extra: list[TieredCache | AsyncTieredCache]

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Result[Any, CacheError]]]:
        if name not in METHOD_NAMES:
            raise AttributeError(name)
        return self.method(self.cache, name)

    def method(
        self, cache: TieredCache | AsyncTieredCache, name: str
    ) -> Callable[..., Awaitable[Result[Any, CacheError]]]:
        """Return `cache.<name>` as a coroutine function, whatever its colour."""
        bound = getattr(cache, name)
        if isinstance(cache, AsyncTieredCache):
            return bound  # type: ignore[no-any-return]

        async def call(*args: Any, **kwargs: Any) -> Result[Any, CacheError]:
            return bound(*args, **kwargs)  # type: ignore[no-any-return]

        return call

    @property
    def has_l1(self) -> bool:
        return self.layout in ("l1", "l1l2")

    @property
    def has_l2(self) -> bool:
        return self.layout in ("l2", "l1l2")

    @property
    def prefix(self) -> str:
        return self.cache.options.key_prefix

    async def sibling(self, **options: Any) -> CacheUnderTest:
        """Return another cache of the same layout and colour, with `options` changed."""
        merged = {**self.options, **options}
        cache = build(self.colour, merged.pop("url"), **merged)
        self._extra.append(cache)
        return CacheUnderTest(
            cache, self.colour, self.layout, self.clock, self.redis, self.url, merged, self._extra
        )

    async def concurrently(self, name: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run many calls at once: threads for the sync shell, tasks for the async one."""
        bound = getattr(self.cache, name)
        if isinstance(self.cache, AsyncTieredCache):
            return list(await asyncio.gather(*(bound(*args) for args in calls)))
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda args: bound(*args), calls))

    def let_time_pass(self, seconds: float) -> None:
        """Move the fake clock, and every TTL in Redis by as much (deleting what expires)."""
        self.clock.advance(seconds)
        if self.redis is None:
            return
        for key in self.redis.scan_iter("*"):
            left = self.redis.pttl(key)
            if left < 0:
                continue
            if left <= seconds * 1000:
                self.redis.delete(key)
            else:
                self.redis.pexpire(key, int(left - seconds * 1000))

    def redis_snapshot(self) -> dict[bytes, tuple[bytes | None, int]]:
        """Return every Redis key with its value (None for non-strings) and PTTL."""
        if self.redis is None:
            return {}
        snapshot: dict[bytes, tuple[bytes | None, int]] = {}
        for key in self.redis.scan_iter("*"):
            kind = self.redis.type(key)
            value = self.redis.get(key) if kind == b"string" else None
            left = self.redis.pttl(key)
            snapshot[key] = (value, math.ceil(left / 1000) if left >= 0 else left)
        return snapshot

    async def close(self) -> None:
        for cache in [self.cache, *self._extra]:
            await close(cache)
        if self.redis is not None:
            self.redis.close()


def failure_of(result: Result[Any, CacheError]) -> CacheError:
    """Return the error of a `Failure`, failing the test on a `Success`."""
    assert isinstance(result, Failure), f"expected a Failure, got {result!r}"
    error = result.failure()
    assert isinstance(error, CacheError)
    return error


def success_of(result: Result[Any, CacheError]) -> Any:
    """Return the value of a `Success`, failing the test on a `Failure`."""
    assert isinstance(result, Success), f"expected a Success, got {result!r}"
    return result.unwrap()

"""The physical floors, timed in the same rounds: the bare parts a cache is built from."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass

import cachetools
import redis
import redis.asyncio

from benchmarks.subjects import VALUE_DICT, VALUE_STR

__all__ = ["FLOORS", "Closers", "Floor", "FloorBatch"]

FloorBatch = Callable[[int], int]
Closer = Callable[[], object]
Closers = list[Closer]
_now = time.perf_counter_ns
_KEY = "floor:key"


@dataclass(frozen=True)
class Floor:
    """One bare operation: `open(redis_url, loop, closers)` returns a batch of n calls."""

    key: str
    label: str
    calls: int
    open: Callable[[str, asyncio.AbstractEventLoop, Closers], FloorBatch]


def _cachetools_lookup(url: str, loop: asyncio.AbstractEventLoop, closers: Closers) -> FloorBatch:
    cache: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize=10_000, ttl=60)

    def batch(n: int) -> int:
        cache[_KEY] = VALUE_STR  # a run outlasts the TTL
        start = _now()
        for _ in range(n):
            cache[_KEY]
        return _now() - start

    return batch


def _unpickle_dict(url: str, loop: asyncio.AbstractEventLoop, closers: Closers) -> FloorBatch:
    payload = pickle.dumps(VALUE_DICT, pickle.HIGHEST_PROTOCOL)
    loads = pickle.loads

    def batch(n: int) -> int:
        start = _now()
        for _ in range(n):
            loads(payload)
        return _now() - start

    return batch


def _redis_get(url: str, loop: asyncio.AbstractEventLoop, closers: Closers) -> FloorBatch:
    client = redis.Redis.from_url(url, single_connection_client=True)
    closers.append(client.close)
    client.set(_KEY, VALUE_STR)
    get = client.get

    def batch(n: int) -> int:
        start = _now()
        for _ in range(n):
            get(_KEY)
        return _now() - start

    return batch


def _redis_mget(url: str, loop: asyncio.AbstractEventLoop, closers: Closers) -> FloorBatch:
    client = redis.Redis.from_url(url, single_connection_client=True)
    closers.append(client.close)
    keys = [f"floor:many:{i}" for i in range(100)]
    client.mset(dict.fromkeys(keys, VALUE_STR))
    mget = client.mget

    def batch(n: int) -> int:
        start = _now()
        for _ in range(n):
            mget(keys)
        return _now() - start

    return batch


def _redis_async_get(url: str, loop: asyncio.AbstractEventLoop, closers: Closers) -> FloorBatch:
    client = redis.asyncio.Redis.from_url(url, single_connection_client=True)
    closers.append(lambda: loop.run_until_complete(client.aclose()))
    loop.run_until_complete(client.set(_KEY, VALUE_STR))
    get = client.get

    async def timed(n: int) -> int:
        start = _now()
        for _ in range(n):
            await get(_KEY)
        return _now() - start

    return lambda n: loop.run_until_complete(timed(n))


FLOORS: tuple[Floor, ...] = (
    Floor("cachetools", "cachetools TTLCache lookup", 5000, _cachetools_lookup),
    Floor("unpickle", "pickle.loads of the 10 KB dict (a copy per read)", 500, _unpickle_dict),
    Floor("redis_get", "redis-py GET, one connection", 300, _redis_get),
    Floor("redis_async_get", "redis.asyncio GET, one connection", 300, _redis_async_get),
    Floor("redis_mget", "redis-py MGET of 100 keys, one connection", 30, _redis_mget),
)

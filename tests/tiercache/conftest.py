"""Fixtures of the tiercache tests: one cache per tier layout and colour."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from tests.redis_topology import RedisClusterServers, RedisSentinelServers
from tests.tiercache.support import ALL_CONFIGS, L2_CONFIGS, CacheUnderTest, FakeClock, build
from tests.tiercache.support import layout_options as _layout_options


def _redis_behind(
    request: pytest.FixtureRequest, layout: str, topology: str
) -> tuple[str | None, dict[str, Any], Any]:
    """Return the URL, the topology options and a plain redis-py client of a layout."""
    if layout == "l1":
        return None, {}, None
    if topology == "sentinel":
        sentinel: RedisSentinelServers = request.getfixturevalue("redis_sentinel")
        client = Sentinel(sentinel.sentinels).master_for(sentinel.service)
        return sentinel.url, {"sentinels": sentinel.sentinels}, client
    if topology == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        return cluster.seed_url, {"cluster": True}, RedisCluster.from_url(cluster.seed_url)
    url: str = request.getfixturevalue("redis_url")
    return url, {}, redis.Redis.from_url(url)


async def _cache_under_test(request: pytest.FixtureRequest) -> AsyncIterator[CacheUnderTest]:
    layout, colour, *topology = str(request.param).split("-")
    url, where, client = _redis_behind(request, layout, topology[0] if topology else "")
    clock = FakeClock()
    options = {**_layout_options(layout, url), **where, "timer": clock, "clock": clock.wall}
    cache = build(colour, options["url"], **{k: v for k, v in options.items() if k != "url"})
    under_test = CacheUnderTest(cache, colour, layout, clock, client, url, options, [])
    try:
        yield under_test
    finally:
        await under_test.close()


@pytest.fixture(params=ALL_CONFIGS)
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[CacheUnderTest]:
    """Yield a cache of every tier layout (L1, L2, L1+L2) in both colours."""
    async for under_test in _cache_under_test(request):
        yield under_test


@pytest.fixture(params=L2_CONFIGS)
async def l2_cache(request: pytest.FixtureRequest) -> AsyncIterator[CacheUnderTest]:
    """Yield a cache of every layout with Redis behind it, in both colours."""
    async for under_test in _cache_under_test(request):
        yield under_test


@pytest.fixture
def clock() -> FakeClock:
    """Return a fake timer for a test to advance."""
    return FakeClock()


MakeCache = Callable[..., Awaitable[CacheUnderTest]]


@pytest.fixture
async def make_cache(clock: FakeClock) -> AsyncIterator[MakeCache]:
    """Return a factory of caches (layout, colour, url, options), closed after the test."""
    made: list[CacheUnderTest] = []

    async def make(layout: str, colour: str, url: str | None, **options: Any) -> CacheUnderTest:
        merged = {**_layout_options(layout, url), "timer": clock, "clock": clock.wall, **options}
        merged.pop("url")
        cache = build(colour, url, **merged)
        under_test = CacheUnderTest(
            cache, colour, layout, clock, None, url, {"url": url, **merged}, []
        )
        made.append(under_test)
        return under_test

    yield make
    for under_test in made:
        await under_test.close()

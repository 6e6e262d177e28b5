"""Async calls from sync code (a fresh event loop each) leave no Redis client behind (issue 11, 14)."""

from __future__ import annotations

from collections.abc import Callable

import redis
from asgiref.sync import async_to_sync
from django.core.cache import caches

from tests.redis_server import RedisServer


def _other_clients(url: str) -> int:
    with redis.Redis.from_url(url) as probe:
        return int(probe.info("clients")["connected_clients"]) - 1


def test_three_hundred_async_to_sync_reads_leave_no_redis_client_behind(
    private_redis: RedisServer, use_caches: Callable[..., None]
) -> None:
    use_caches(private_redis.url, L1_MAXSIZE=0)
    cache = caches["default"]
    cache.set("k", "v")
    before = _other_clients(private_redis.url)
    for _ in range(300):
        assert async_to_sync(cache.aget)("k") == "v"
    assert _other_clients(private_redis.url) <= before + 1

"""The Redis adapter's own fast path, on a real server."""

from __future__ import annotations

import redis

from tests.tiercache.support import success_of
from tiercache import NotAnInteger, TieredCache
from tiercache.redis_tier import _has_wire_path


def test_single_commands_take_the_wire_path_with_hiredis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert _has_wire_path(client.connection_pool.make_connection())
    finally:
        client.close()


def test_the_wire_path_reloads_flushed_scripts_and_maps_error_replies(redis_url: str) -> None:
    cache = TieredCache.from_url(redis_url, l1_maxsize=0)
    raw = redis.Redis.from_url(redis_url)
    try:
        assert success_of(cache.set("k", "v")) is None
        raw.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
        assert success_of(cache.set("k", "w")) is None
        assert success_of(cache.get("k")) == "w"
        assert isinstance(cache.increment("k").failure(), NotAnInteger)
        assert success_of(cache.increment("n", 2)) == 2  # the connection is still in sync
    finally:
        cache.close()
        raw.close()

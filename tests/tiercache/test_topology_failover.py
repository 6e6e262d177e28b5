"""Failovers on real topologies: reads never raise, other primaries stay up, writes come back.

No wall-clock thresholds here (the machine is shared): a failover must end, and the
bound below is only how long we wait before calling it stuck. The timings themselves
are measured by `python -m benchmarks.failover`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel
from returns.result import Result, Success

from tests.redis_topology import (
    RedisClusterServers,
    RedisSentinelServers,
    a_forked_child_runs,
    wait_until,
)
from tiercache import AsyncTieredCache, CacheError, TieredCache

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Keys over many slots; the cache stores them as "tc:<key>".
KEYS = [f"user:{i}" for i in range(60)]
#: Longest we wait for a write to succeed again before calling the failover stuck.
STUCK = 30.0


class Readers:
    """Threads that read while a failover runs, keeping every result and any exception."""

    def __init__(self, read: Callable[[], list[Result[Any, CacheError]]], threads: int = 2):
        self._read = read
        self._stop = threading.Event()
        self.results: list[Result[Any, CacheError]] = []
        self.escaped: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.results.extend(self._read())
            except BaseException as exc:  # the point: nothing may escape a read
                self.escaped.append(exc)

    @contextmanager
    def running(self) -> Iterator[Readers]:
        for thread in self._threads:
            thread.start()
        wait_until(lambda: len(self.results) > 10, "the readers to start")
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()


class OtherProcess:
    """A process that holds a key in its L1 and says what it reads, when asked."""

    def __init__(self, url: str, options: dict[str, Any], key: str) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.tiercache.topology_worker",
                url,
                json.dumps(options),
                key,
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("get\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def sees(self, value: str) -> Callable[[], bool]:
        return lambda: self.read()["value"] == value

    def close(self) -> None:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("quit\n")
        self._process.stdin.close()
        self._process.wait(10)
        self._process.stdout.close()


def _write_succeeds(cache: TieredCache, key: str, value: str) -> Callable[[], bool]:
    return lambda: isinstance(cache.set(key, value), Success)


def _cluster_cache(cluster: RedisClusterServers, **options: Any) -> TieredCache:
    return TieredCache.from_url(cluster.seed_url, cluster=True, **options)


def test_reads_never_fail_during_a_cluster_failover(redis_cluster: RedisClusterServers) -> None:
    cache = _cluster_cache(redis_cluster, l1_maxsize=0)
    try:
        assert isinstance(cache.set_many(dict.fromkeys(KEYS, "before")), Success)
        moved = redis_cluster.primary_for("tc:user:1")
        readers = Readers(lambda: [cache.get_many(KEYS), cache.get("user:1")])
        with readers.running():
            redis_cluster.failover(redis_cluster.replica_of(moved))
        assert readers.escaped == []
        assert all(isinstance(result, Success) for result in readers.results)
        assert isinstance(cache.set("user:1", "after"), Success)
        assert cache.get("user:1") == Success("after")
        assert redis_cluster.primary_for("tc:user:1") is not moved
    finally:
        cache.close()


def test_async_reads_never_fail_during_a_cluster_failover(
    redis_cluster: RedisClusterServers,
) -> None:
    async def scenario() -> list[Result[Any, CacheError]]:
        cache = AsyncTieredCache.from_url(redis_cluster.seed_url, cluster=True, l1_maxsize=0)
        try:
            await cache.set_many(dict.fromkeys(KEYS, "before"))
            moved = redis_cluster.primary_for("tc:user:2")
            failover = asyncio.get_running_loop().run_in_executor(
                None, redis_cluster.failover, redis_cluster.replica_of(moved)
            )
            results = []
            while not failover.done():
                results += [await cache.get_many(KEYS), await cache.get("user:2")]
            await failover
            results.append(await cache.set("user:2", "after"))
            results.append(await cache.get("user:2"))
            return results
        finally:
            await cache.aclose()

    results = asyncio.run(scenario())
    assert all(isinstance(result, Success) for result in results)
    assert results[-1] == Success("after")


def test_a_killed_primary_cuts_off_only_its_own_slots_until_its_replica_takes_over(
    redis_cluster: RedisClusterServers,
) -> None:
    cache = _cluster_cache(redis_cluster, l1_maxsize=0)
    try:
        assert isinstance(cache.set_many(dict.fromkeys(KEYS, "before")), Success)
        victim = redis_cluster.primary_for("tc:user:1")
        elsewhere = [k for k in KEYS if redis_cluster.primary_for(f"tc:{k}") is not victim]
        readers = Readers(lambda: [cache.get_many(KEYS), cache.get("user:1")])
        others = Readers(lambda: [cache.get(key) for key in elsewhere[:5]], threads=1)
        with readers.running(), others.running():
            victim.kill()
            wait_until(_write_succeeds(cache, "user:1", "after"), "writes to come back", STUCK)
        assert readers.escaped == others.escaped == []
        # The other primaries answered throughout; batch reads never failed (the dead
        # primary's keys were misses); single reads of its keys failed fast, or waited.
        assert all(isinstance(result, Success) for result in others.results)
        batches = readers.results[::2]
        assert all(isinstance(result, Success) for result in batches)
        assert cache.get("user:1") == Success("after")
    finally:
        cache.close()


def test_a_killed_sentinel_master_is_followed_to_the_promoted_replica(
    redis_sentinel: RedisSentinelServers,
) -> None:
    cache = TieredCache.from_url(
        redis_sentinel.url, sentinels=redis_sentinel.sentinels, l1_maxsize=0
    )
    try:
        assert isinstance(cache.set("user:1", "before"), Success)
        old = redis_sentinel.master()
        readers = Readers(lambda: [cache.get("user:1"), cache.get_many(KEYS[:10])])
        with readers.running():
            promoted = redis_sentinel.kill_master()
            wait_until(_write_succeeds(cache, "user:1", "after"), "writes to come back", STUCK)
        assert readers.escaped == []
        assert cache.get("user:1") == Success("after")
        assert promoted is not old
    finally:
        cache.close()


def test_sentinel_connections_find_the_master_again_after_being_dropped(
    redis_sentinel: RedisSentinelServers,
) -> None:
    # redis-py's Sentinel connection reconnects a dropped socket to localhost:6379 unless
    # told otherwise; every connection of ours must go back to the master.
    cache = TieredCache.from_url(redis_sentinel.url, sentinels=redis_sentinel.sentinels)
    try:
        assert isinstance(cache.set("user:1", "one"), Success)
        with redis.Redis(port=redis_sentinel.master().port) as master:
            master.client_kill_filter(_type="normal", skipme=True)
            wait_until(_write_succeeds(cache, "user:2", "two"), "writes after the kill", STUCK)
            assert master.get("tc:user:2") is not None
        assert cache.get("user:1") == Success("one")
    finally:
        cache.close()


def test_a_forked_child_watches_the_sentinel_master_itself(
    redis_sentinel: RedisSentinelServers,
) -> None:
    # A gunicorn --preload worker drops the old master's keys only if it sees the move.
    cache = TieredCache.from_url(redis_sentinel.url, sentinels=redis_sentinel.sentinels)
    try:
        assert isinstance(cache.get("user:1"), Success)
        assert a_forked_child_runs("tiercache-sentinel")
    finally:
        cache.close()


def _another_process_sees_the_writes_after(
    url: str,
    options: dict[str, Any],
    event: Callable[[], object],
    plain: Callable[[], redis.Redis | RedisCluster],
) -> None:
    """Let another process hold keys of every primary in L1, run `event`, then change them
    through tiercache and through `plain` redis-py; wait until it sees every change."""
    cache = TieredCache.from_url(url, **options)
    assert cache.bus.mode == "tracking"
    keys = KEYS[:12]  # over every primary of the cluster
    other = OtherProcess(url, options, ",".join(keys))
    try:
        assert isinstance(cache.set_many(dict.fromkeys(keys, "before")), Success)
        wait_until(lambda: other.read()["held_keys"] == keys, "the other L1 to fill")
        event()
        wait_until(_write_succeeds(cache, "user:1", "after"), "writes to come back", STUCK)
        wait_until(lambda: other.read()["held_keys"] == keys, "the other L1 to fill again")
        assert isinstance(cache.set_many(dict.fromkeys(keys[:6], "after")), Success)
        with plain() as client:
            for key in keys[6:]:
                client.set(f"tc:{key}", "after")
        wait_until(lambda: set(other.read()["values"].values()) == {"after"}, "the writes", STUCK)
    finally:
        cache.close()
        other.close()


def test_after_a_cluster_failover_another_process_never_keeps_a_stale_copy(
    redis_cluster: RedisClusterServers,
) -> None:
    def failover() -> None:
        redis_cluster.failover(redis_cluster.replica_of(redis_cluster.primary_for("tc:user:1")))

    _another_process_sees_the_writes_after(
        redis_cluster.seed_url,
        {"cluster": True},
        failover,
        lambda: RedisCluster.from_url(redis_cluster.seed_url),
    )


def test_after_a_killed_primary_another_process_never_keeps_a_stale_copy(
    redis_cluster: RedisClusterServers,
) -> None:
    def kill() -> None:
        redis_cluster.kill_primary(redis_cluster.primary_for("tc:user:1"))

    _another_process_sees_the_writes_after(
        redis_cluster.seed_url,
        {"cluster": True},
        kill,
        lambda: RedisCluster.from_url(redis_cluster.seed_url),
    )


def test_after_a_killed_sentinel_master_another_process_never_keeps_a_stale_copy(
    redis_sentinel: RedisSentinelServers,
) -> None:
    options = {"sentinels": redis_sentinel.sentinels}
    _another_process_sees_the_writes_after(
        redis_sentinel.url,
        options,
        redis_sentinel.kill_master,
        lambda: Sentinel(redis_sentinel.sentinels).master_for(redis_sentinel.service),
    )


def test_each_primary_has_its_own_breaker(redis_cluster: RedisClusterServers) -> None:
    cache = _cluster_cache(redis_cluster, l1_maxsize=0)
    try:
        assert isinstance(cache.get_many(KEYS), Success)
        breakers = cache._assembly.node_breakers
        primaries = {f"127.0.0.1:{server.port}" for server in redis_cluster.primaries()}
        assert set(breakers) == primaries
        assert len({id(breaker) for breaker in breakers.values()}) == len(primaries)
    finally:
        cache.close()


def test_another_process_drops_keys_of_every_primary_whoever_writes_them(
    redis_cluster: RedisClusterServers,
) -> None:
    assert len({redis_cluster.primary_for(f"tc:{key}").port for key in KEYS[:12]}) == 3
    _another_process_sees_the_writes_after(
        redis_cluster.seed_url,
        {"cluster": True},
        lambda: None,
        lambda: RedisCluster.from_url(redis_cluster.seed_url),
    )

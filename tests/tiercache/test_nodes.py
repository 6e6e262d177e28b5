"""`TieredCache.node_statuses()`: each Redis node, its role, its answer to a PING, its breaker."""

from __future__ import annotations

import os
import signal

import redis
from returns.result import Failure

from tests.redis_server import RedisServer
from tests.redis_topology import RedisClusterServers, RedisSentinelServers, wait_until
from tiercache import AsyncTieredCache, TieredCache


def test_a_standalone_redis_is_one_primary_reached_with_the_urls_credentials() -> None:
    with RedisServer("--requirepass", "s3cret-pass") as server:
        cache = TieredCache.from_url(f"redis://:s3cret-pass@127.0.0.1:{server.port}/3")
        try:
            (node,) = cache.node_statuses()
        finally:
            cache.close()

    assert (node.address, node.role, node.healthy, node.breaker) == (
        f"127.0.0.1:{server.port}",
        "primary",
        True,
        "closed",
    )
    assert node.latency_ms is not None
    assert node.latency_ms > 0
    assert "s3cret-pass" not in repr(node)


async def test_the_async_cache_reaches_the_same_node_on_the_event_loop() -> None:
    with RedisServer("--requirepass", "s3cret-pass") as server:
        url = f"redis://:s3cret-pass@127.0.0.1:{server.port}/3"
        cache = AsyncTieredCache.from_url(url)
        try:
            (node,) = await cache.node_statuses()
        finally:
            await cache.aclose()

    assert (node.address, node.role, node.healthy, node.breaker) == (
        f"127.0.0.1:{server.port}",
        "primary",
        True,
        "closed",
    )
    assert node.latency_ms is not None
    assert node.latency_ms > 0


async def test_an_l1_only_cache_has_no_node() -> None:
    assert TieredCache.from_url(None).node_statuses() == []
    assert await AsyncTieredCache.from_url(None).node_statuses() == []


def test_a_stopped_server_is_unhealthy_and_its_breaker_opens(private_redis: RedisServer) -> None:
    cache = TieredCache.from_url(private_redis.url)
    private_redis.kill()
    try:
        for _ in range(cache.options.breaker_threshold):
            assert isinstance(cache.get("k"), Failure)
        (node,) = cache.node_statuses()
    finally:
        cache.close()

    assert not node.healthy
    assert node.latency_ms is None
    assert node.error is not None
    assert "unreachable" in node.error
    assert node.breaker == "open"


def test_every_cluster_node_is_listed_and_a_paused_one_is_unhealthy(
    redis_cluster: RedisClusterServers,
) -> None:
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True)
    primaries = {f"127.0.0.1:{server.port}" for server in redis_cluster.primaries()}
    paused = redis_cluster.replica_of(redis_cluster.primaries()[0])
    try:
        healthy = cache.node_statuses()
        with redis.Redis(port=paused.port) as replica:
            replica.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # answers nobody for 3 s
            try:
                during_pause = cache.node_statuses()
            finally:
                replica.execute_command("CLIENT", "UNPAUSE")
    finally:
        cache.close()

    assert {node.address for node in healthy} == {
        f"127.0.0.1:{port}" for _host, port in redis_cluster.startup_nodes
    }
    assert [node.role for node in healthy] == ["primary"] * 3 + ["replica"] * 3
    assert {node.address for node in healthy if node.role == "primary"} == primaries
    assert all(node.healthy for node in healthy)
    assert [node.breaker for node in healthy] == ["closed"] * 3 + [None] * 3
    unhealthy = [node for node in during_pause if not node.healthy]
    assert [node.address for node in unhealthy] == [f"127.0.0.1:{paused.port}"]
    assert unhealthy[0].error is not None
    assert "did not answer in time" in unhealthy[0].error


async def test_the_async_cache_lists_every_cluster_node_and_a_paused_one_is_unhealthy(
    redis_cluster: RedisClusterServers,
) -> None:
    cache = AsyncTieredCache.from_url(redis_cluster.seed_url, cluster=True)
    paused = redis_cluster.replica_of(redis_cluster.primaries()[1])
    try:
        healthy = await cache.node_statuses()
        with redis.Redis(port=paused.port) as replica:
            replica.execute_command("CLIENT", "PAUSE", 2000, "ALL")  # UNPAUSE waits for it
            try:
                during_pause = await cache.node_statuses()
            finally:
                replica.execute_command("CLIENT", "UNPAUSE")
    finally:
        await cache.aclose()

    sync = TieredCache.from_url(redis_cluster.seed_url, cluster=True)
    try:
        expected = [(node.address, node.role, node.breaker) for node in sync.node_statuses()]
    finally:
        sync.close()
    assert [(node.address, node.role, node.breaker) for node in healthy] == expected
    assert [node.role for node in healthy] == ["primary"] * 3 + ["replica"] * 3
    assert all(node.healthy for node in healthy)
    unhealthy = [node for node in during_pause if not node.healthy]
    assert [node.address for node in unhealthy] == [f"127.0.0.1:{paused.port}"]
    assert unhealthy[0].error is not None
    assert "did not answer in time" in unhealthy[0].error


def test_a_replica_the_sentinels_deem_down_stays_listed_unhealthy(
    redis_sentinel: RedisSentinelServers,
) -> None:
    cache = TieredCache.from_url(redis_sentinel.url, sentinels=redis_sentinel.sentinels)
    (replica,) = redis_sentinel.replicas()
    sentinels = [redis.Redis(host, port) for host, port in redis_sentinel.sentinels]
    try:
        os.kill(replica.pid, signal.SIGSTOP)  # answers nobody until SIGCONT, at once
        try:
            wait_until(
                lambda: all(
                    state["is_sdown"]
                    for sentinel in sentinels
                    for state in sentinel.sentinel_slaves(redis_sentinel.service)
                ),
                "every Sentinel to deem the stopped replica down",
            )
            nodes = cache.node_statuses()
        finally:
            os.kill(replica.pid, signal.SIGCONT)
    finally:
        cache.close()
        for sentinel in sentinels:
            sentinel.close()
        redis_sentinel.wait_ready()  # the Sentinels see the replica up again

    (listed,) = [node for node in nodes if node.role == "replica"]
    assert (listed.address, listed.healthy) == (f"127.0.0.1:{replica.port}", False)
    assert listed.error is not None
    assert "the Sentinels deem it down (s_down" in listed.error
    assert [node.healthy for node in nodes if node.role != "replica"] == [True] * 4


async def test_sentinel_shows_the_master_its_replica_and_the_sentinels(
    redis_sentinel: RedisSentinelServers,
) -> None:
    cache = TieredCache.from_url(redis_sentinel.url, sentinels=redis_sentinel.sentinels)
    twin = AsyncTieredCache.from_url(redis_sentinel.url, sentinels=redis_sentinel.sentinels)
    try:
        nodes = cache.node_statuses()
        async_nodes = await twin.node_statuses()
    finally:
        cache.close()
        await twin.aclose()

    expected = [
        (f"127.0.0.1:{redis_sentinel.master().port}", "master", "closed"),
        *((f"127.0.0.1:{server.port}", "replica", None) for server in redis_sentinel.replicas()),
        *((f"{host}:{port}", "sentinel", None) for host, port in redis_sentinel.sentinels),
    ]
    assert [(node.address, node.role, node.breaker) for node in nodes] == expected
    assert all(node.healthy for node in nodes)
    assert [(node.address, node.role, node.healthy) for node in async_nodes] == [
        (node.address, node.role, node.healthy) for node in nodes
    ]

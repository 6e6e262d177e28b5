"""Fixtures shared by every test: private Redis servers and a clean tiercache registry.

No test talks to a Redis at 127.0.0.1:6379. Use ``redis_url`` for an empty
database on the session's server, ``private_redis`` for a server the test may
kill, stop or restart. For other server options, start one in the test:
``with RedisServer("--requirepass", "s3cret") as server: ...``
(``from tests.redis_server import RedisServer``).

``redis_cluster`` (3 primaries + 3 replicas) and ``redis_sentinel`` (a master, a
replica, 3 sentinels) are started once per run, by the first test that asks, and
handed to each test healthy and empty, so a test may fail nodes over or kill them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
import redis

from tests.redis_server import RedisServer
from tests.redis_topology import RedisClusterServers, RedisSentinelServers


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Run one Redis for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Return the session server's URL, its data flushed before the test."""
    if not redis_server.is_running():
        # A test that stopped the shared server must not fail every later test.
        redis_server.restart()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """Run a Redis only for this test, which may kill or restart it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def _cluster_servers() -> Iterator[RedisClusterServers]:
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """Return the session's Redis Cluster, healed after earlier tests' kills, and empty."""
    _cluster_servers.heal()
    _cluster_servers.flushall()
    return _cluster_servers


@pytest.fixture(scope="session")
def _sentinel_servers() -> Iterator[RedisSentinelServers]:
    with RedisSentinelServers() as sentinel:
        yield sentinel


@pytest.fixture
def redis_sentinel(_sentinel_servers: RedisSentinelServers) -> RedisSentinelServers:
    """Return the session's Sentinel set, healed after earlier tests' kills, and empty."""
    _sentinel_servers.heal()
    _sentinel_servers.flushall()
    return _sentinel_servers


@pytest.fixture(autouse=True)
def _reset_tiercache_registry() -> Iterator[None]:
    """Reset tiercache's process-wide state after each test, once that module exists."""
    yield
    try:
        registry = importlib.import_module("tiercache.registry")
    except ModuleNotFoundError as error:
        if error.name in {"tiercache", "tiercache.registry"}:
            return
        raise
    registry.reset()

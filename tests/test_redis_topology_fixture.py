"""The Cluster and Sentinel test topologies are real, ready, and fail over as tests rely on."""

from __future__ import annotations

import os

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.redis_topology import RedisClusterServers, RedisSentinelServers

# One key per primary of a 3-shard cluster (slots 866, 6257 and 12182).
_KEYS_ON_EVERY_SHARD = ("a", "b", "c")


def _cluster_client(cluster: RedisClusterServers) -> RedisCluster:
    return RedisCluster.from_url(cluster.seed_url, decode_responses=True)


def _node(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, retry=Retry(NoBackoff(), 0))


def test_cluster_has_three_primaries_each_with_a_linked_replica(
    redis_cluster: RedisClusterServers,
) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    assert len(redis_cluster.servers) == 6
    for primary in primaries:
        replica = redis_cluster.replica_of(primary)
        with _node(replica.port) as client:
            info = client.info("replication")
        assert (info["role"], info["master_port"], info["master_link_status"]) == (
            "slave",
            primary.port,
            "up",
        )
    for server in redis_cluster.servers:
        assert server.port + 10_000 <= 65_535  # the cluster bus port exists
        with _node(server.port) as client:
            assert "cluster_state:ok" in client.execute_command("CLUSTER", "INFO")


def test_cluster_client_reaches_every_shard_from_one_seed(
    redis_cluster: RedisClusterServers,
) -> None:
    owners = {redis_cluster.primary_for(key).port for key in _KEYS_ON_EVERY_SHARD}
    assert owners == {primary.port for primary in redis_cluster.primaries()}
    with _cluster_client(redis_cluster) as client:
        for key in _KEYS_ON_EVERY_SHARD:
            client.set(key, key.upper())
        assert [client.get(key) for key in _KEYS_ON_EVERY_SHARD] == ["A", "B", "C"]


def test_each_test_starts_with_an_empty_cluster(redis_cluster: RedisClusterServers) -> None:
    with _cluster_client(redis_cluster) as client:
        assert client.dbsize(target_nodes=RedisCluster.PRIMARIES) == 0


def test_cluster_failover_promotes_the_replica_and_keeps_the_data(
    redis_cluster: RedisClusterServers,
) -> None:
    with _cluster_client(redis_cluster) as client:
        client.set("a", "kept")
        old = redis_cluster.primary_for("a")
        replica = redis_cluster.replica_of(old)
        redis_cluster.failover(replica)
        assert redis_cluster.primary_for("a") is replica
        assert redis_cluster.replica_of(replica) is old
        assert client.get("a") == "kept"


def test_killed_primary_is_replaced_by_its_replica_then_healed(
    redis_cluster: RedisClusterServers,
) -> None:
    old = redis_cluster.primary_for("b")
    pid = old.pid
    promoted = redis_cluster.kill_primary(old)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert redis_cluster.primary_for("b") is promoted
    with _cluster_client(redis_cluster) as client:
        client.set("b", "after the kill")
        assert client.get("b") == "after the kill"
    redis_cluster.heal()
    assert old.is_running()
    assert redis_cluster.replica_of(promoted) is old
    assert len(redis_cluster.primaries()) == 3


def _sentinel_client(topology: RedisSentinelServers) -> Sentinel:
    return Sentinel(topology.sentinels, socket_timeout=1, decode_responses=True)


def test_sentinels_agree_on_a_master_with_a_linked_replica(
    redis_sentinel: RedisSentinelServers,
) -> None:
    master = redis_sentinel.master()
    (replica,) = redis_sentinel.replicas()
    sentinel = _sentinel_client(redis_sentinel)
    assert sentinel.discover_master(redis_sentinel.service) == ("127.0.0.1", master.port)
    assert sentinel.discover_slaves(redis_sentinel.service) == [("127.0.0.1", replica.port)]
    assert redis_sentinel.url == "redis://mymaster/0"
    with _node(replica.port) as client:
        assert client.info("replication")["master_link_status"] == "up"


def test_killed_sentinel_master_is_replaced_by_its_replica_then_healed(
    redis_sentinel: RedisSentinelServers,
) -> None:
    old = redis_sentinel.master()
    sentinel = _sentinel_client(redis_sentinel)
    sentinel.master_for(redis_sentinel.service).set("k", "before")
    promoted = redis_sentinel.kill_master()
    assert promoted is not old
    assert not old.is_running()
    master = sentinel.master_for(redis_sentinel.service)
    master.set("k", "after")
    assert master.get("k") == "after"
    redis_sentinel.heal()
    assert redis_sentinel.master() is promoted
    assert redis_sentinel.replicas() == [old]


def test_each_test_starts_with_an_empty_sentinel_master(
    redis_sentinel: RedisSentinelServers,
) -> None:
    master = _sentinel_client(redis_sentinel).master_for(redis_sentinel.service)
    assert master.dbsize() == 0


def _assert_gone(pids: list[int]) -> None:
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_closed_cluster_leaves_no_process_behind() -> None:
    with RedisClusterServers(primaries=1, replicas=0) as cluster:
        pids = cluster.pids()
    _assert_gone(pids)


def test_closed_sentinel_set_leaves_no_process_behind() -> None:
    with RedisSentinelServers(replicas=0, sentinels=1) as sentinel:
        pids = sentinel.pids()
    _assert_gone(pids)

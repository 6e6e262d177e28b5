"""Coherence on a real Redis Cluster: Redis's own tracking, per primary.

Other processes' L1s are covered in test_topology_failover.py (a real second process,
with and without failovers); here, what one process sees of its own primaries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from returns.result import Success

from tests.redis_topology import RedisClusterServers, a_forked_child_runs, wait_until
from tiercache import TieredCache
from tiercache.memory import MISSING

#: Keys over every primary; the cache stores them as "tc:<key>".
KEYS = [f"user:{i}" for i in range(30)]


def _published(cluster: RedisClusterServers) -> int:
    """Return how many PUBLISH commands the primaries have run."""
    total = 0
    for server in cluster.primaries():
        with redis.Redis(port=server.port) as node:
            stats = node.info("commandstats")
        total += int(stats.get("cmdstat_publish", {}).get("calls", 0))
    return total


@pytest.fixture
def plain(redis_cluster: RedisClusterServers) -> Iterator[RedisCluster]:
    with RedisCluster.from_url(redis_cluster.seed_url) as client:
        yield client


@pytest.mark.parametrize("mode", ["tracking", "broadcast"])
def test_writes_publish_nothing_in_the_default_tracking_mode(
    redis_cluster: RedisClusterServers, mode: str
) -> None:
    options = {} if mode == "tracking" else {"invalidation": "broadcast"}
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True, **options)
    try:
        assert cache.bus.mode == mode
        before = _published(redis_cluster)
        assert isinstance(cache.set("user:1", "one"), Success)
        assert isinstance(cache.set_many(dict.fromkeys(KEYS, "x")), Success)
        assert isinstance(cache.delete("user:2"), Success)
        assert isinstance(cache.increment("count"), Success)
        published = _published(redis_cluster) - before
        assert (published == 0) == (mode == "tracking")
    finally:
        cache.close()


def test_a_holder_drops_keys_of_every_primary_when_plain_redis_py_writes_them(
    redis_cluster: RedisClusterServers, plain: RedisCluster
) -> None:
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True, l1_ttl=None)
    try:
        assert isinstance(cache.set_many(dict.fromkeys(KEYS, "old")), Success)
        assert cache.get_many(KEYS) == Success(dict.fromkeys(KEYS, "old"))
        assert cache.l1 is not None
        assert all(cache.l1.get(f"tc:{key}") == "old" for key in KEYS)
        for key in KEYS:
            plain.set(f"tc:{key}", "new")
        wait_until(lambda: all(cache.l1.get(f"tc:{k}") is MISSING for k in KEYS), "the drops")
        assert cache.get_many(KEYS) == Success(dict.fromkeys(KEYS, "new"))
    finally:
        cache.close()


def test_a_deaf_primary_keeps_its_keys_out_of_l1_while_the_others_fill(
    redis_cluster: RedisClusterServers,
) -> None:
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True)
    try:
        ears = cache.bus.ears
        assert ears is not None
        assert cache.l1 is not None
        deaf = redis_cluster.primary_for("tc:user:1")
        [ear] = [ear for ear in ears.ears() if ear.node.endswith(f":{deaf.port}")]
        assert isinstance(cache.set_many(dict.fromkeys(KEYS, "v")), Success)
        ear.healthy = False  # as when its invalidation connection is lost
        assert cache.get_many(KEYS) == Success(dict.fromkeys(KEYS, "v"))
        assert cache.get("user:1") == Success("v")
        theirs = {key for key in KEYS if redis_cluster.primary_for(f"tc:{key}") is deaf}
        filled = {key for key in KEYS if cache.l1.get(f"tc:{key}") is not MISSING}
        assert filled == set(KEYS) - theirs
        with redis.Redis(port=deaf.port) as node:  # the listener resubscribes: heard again
            node.client_kill_filter(_type="pubsub")
        wait_until(lambda: ear.healthy, "the primary to be heard again")
        assert cache.get_many(KEYS) == Success(dict.fromkeys(KEYS, "v"))
        assert all(cache.l1.get(f"tc:{key}") == "v" for key in KEYS)
    finally:
        cache.close()


def test_a_resubscribing_primary_drops_only_what_it_vouched_for(
    redis_cluster: RedisClusterServers,
) -> None:
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True, l1_ttl=None)
    try:
        assert cache.l1 is not None
        assert cache.bus.ears is not None
        assert isinstance(cache.set_many(dict.fromkeys(KEYS, "v")), Success)
        assert cache.get_many(KEYS) == Success(dict.fromkeys(KEYS, "v"))
        lost = redis_cluster.primary_for("tc:user:1")
        [ear] = [e for e in cache.bus.ears.ears() if e.node.endswith(f":{lost.port}")]
        reconnects = ear.reconnects
        with redis.Redis(port=lost.port) as node:
            node.client_kill_filter(_type="pubsub")
        wait_until(lambda: ear.reconnects > reconnects and ear.healthy, "the resubscribe")
        theirs = {key for key in KEYS if redis_cluster.primary_for(f"tc:{key}") is lost}
        held = {key for key in KEYS if cache.l1.get(f"tc:{key}") is not MISSING}
        assert held == set(KEYS) - theirs
    finally:
        cache.close()


def _move_slot(cluster: RedisClusterServers, key: str, to: int) -> None:
    """Reshard `key`'s slot, and the key, to the primary on port `to` (redis-cli's steps)."""
    source = cluster.primary_for(key)
    with redis.Redis(port=source.port) as old, redis.Redis(port=to) as new:
        slot = old.execute_command("CLUSTER", "KEYSLOT", key)
        old_id, new_id = (
            old.execute_command("CLUSTER", "MYID"),
            new.execute_command("CLUSTER", "MYID"),
        )
        new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", old_id)
        old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", new_id)
        for stored in old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            old.execute_command("MIGRATE", "127.0.0.1", to, "", 0, 5000, "KEYS", stored)
        for port in (to, source.port):
            with redis.Redis(port=port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_id)
    wait_until(lambda: cluster.primary_for(key).port == to, "the slot to move")


def test_a_resharded_key_is_tracked_by_its_new_primary(
    redis_cluster: RedisClusterServers, plain: RedisCluster
) -> None:
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True, l1_ttl=None)
    source = redis_cluster.primary_for("tc:user:1")
    target = next(p for p in redis_cluster.primaries() if p is not source)
    try:
        assert isinstance(cache.set("user:1", "old"), Success)
        assert cache.get("user:1") == Success("old")
        _move_slot(redis_cluster, "tc:user:1", target.port)
        # Reads go on (a MOVED read is answered, not kept) until the new primary tracks it.
        wait_until(lambda: cache.get("user:1") == Success("old"), "a read after the move")
        assert cache.l1 is not None
        wait_until(
            lambda: cache.get("user:1") == Success("old") and cache.l1.get("tc:user:1") == "old",
            "L1 to hold it again",
        )
        plain.set("tc:user:1", "new")
        wait_until(lambda: cache.get("user:1") == Success("new"), "the holder to drop it")
    finally:
        cache.close()
        _move_slot(redis_cluster, "tc:user:1", source.port)


def test_a_forked_child_watches_the_slot_map_itself(redis_cluster: RedisClusterServers) -> None:
    # Its primaries' ears follow failovers only if it sees the slot map change.
    cache = TieredCache.from_url(redis_cluster.seed_url, cluster=True)
    try:
        assert isinstance(cache.get("user:1"), Success)
        assert a_forked_child_runs("tiercache-cluster")
    finally:
        cache.close()

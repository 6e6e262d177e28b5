"""L1 coherence: the in-process fan-out, the invalidation listener, and what it does on loss.

"Another process" is played by a raw Redis client publishing messages with a foreign
sender id; tests/e2e/ runs real processes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer
from tests.tiercache.support import build, close, success_of
from tiercache import AsyncTieredCache, TieredCache, registry, resilience_stats
from tiercache.memory import MISSING
from tiercache.messages import encode

# Writers publish to every process channel under the base but their own: listen as a
# process of our own would.
CHANNEL = "tiercache:invalidate:0:observer"


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Return once `condition()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.002)


def listener_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tiercache-listener")]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def cache(redis_url: str) -> Iterator[TieredCache]:
    made = TieredCache.from_url(redis_url, l1_ttl=None)
    yield made
    made.close()


def publish_to_processes(raw: redis.Redis, message: str | bytes) -> None:
    """Publish as a write script does: to every process channel (but the observer's)."""
    for channel in raw.pubsub_channels("tiercache:invalidate:0:*"):
        if channel != CHANNEL.encode():
            raw.publish(channel, message)


def announce(raw: redis.Redis, *keys: str, op: str = "keys", pattern: str = "") -> None:
    """Publish what another process publishes after a write."""
    publish_to_processes(raw, encode("other-process", op, list(keys), pattern))  # type: ignore[arg-type]


# -- one process ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.set("k", "new"), "new"),
        (lambda c: c.set_many({"k": "new", "other": "x"}), "new"),
        (lambda c: c.delete("k"), None),
        (lambda c: c.increment("k"), "8"),
        (lambda c: c.expire("k", 100), "7"),
        (lambda c: c.delete_pattern("k*"), None),
        (lambda c: c.flush(), None),
    ],
    ids=["set", "set_many", "delete", "increment", "expire", "delete_pattern", "flush"],
)
def test_two_caches_in_one_process_see_each_others_writes_at_once(
    redis_url: str, change: Callable[[TieredCache], object], expected: str | None
) -> None:
    writer = TieredCache.from_url(redis_url, l1_ttl=None)
    reader = TieredCache.from_url(redis_url, l1_ttl=None)
    try:
        success_of(writer.set("k", "7"))
        assert success_of(reader.get("k")) == "7"  # now held in the reader's L1
        success_of(change(writer))  # type: ignore[arg-type]
        # No waiting: the in-process fan-out is synchronous.
        assert success_of(reader.get("k")) == expected
    finally:
        writer.close()
        reader.close()


async def test_async_and_sync_caches_in_one_process_share_the_bus(redis_url: str) -> None:
    sync = build("sync", redis_url, l1_ttl=None)
    asynchronous = build("async", redis_url, l1_ttl=None)
    assert isinstance(sync, TieredCache)
    assert isinstance(asynchronous, AsyncTieredCache)
    try:
        success_of(sync.set("k", "1"))
        assert success_of(await asynchronous.get("k")) == "1"
        success_of(sync.set("k", "2"))
        assert success_of(await asynchronous.get("k")) == "2"
        success_of(await asynchronous.delete("k"))
        assert success_of(sync.get("k")) is None
    finally:
        await close(sync)
        await close(asynchronous)


def test_one_listener_thread_per_bus_however_many_caches(redis_url: str) -> None:
    caches = [TieredCache.from_url(redis_url) for _ in range(5)]
    try:
        assert len(listener_threads()) == 1
        assert len({id(c.bus) for c in caches}) == 1
    finally:
        for made in caches:
            made.close()


def test_cache_without_l1_or_without_invalidation_starts_no_listener(redis_url: str) -> None:
    l2_only = TieredCache.from_url(redis_url, l1_maxsize=0)
    deaf = TieredCache.from_url(redis_url.replace("/0", "/1"), invalidation=False)
    try:
        success_of(l2_only.set("k", "v"))
        success_of(deaf.set("k", "v"))
        assert listener_threads() == []
        assert resilience_stats(deaf)["bus_state"] == "off"
    finally:
        l2_only.close()
        deaf.close()


# -- messages from other processes -------------------------------------------------


def test_message_from_another_process_drops_the_l1_copy(
    cache: TieredCache, raw: redis.Redis
) -> None:
    success_of(cache.set("k", "old"))
    raw.set("tc:k", "new")  # another process's write...
    assert success_of(cache.get("k")) == "old"
    announce(raw, "tc:k")  # ...and its message
    assert cache.l1 is not None
    wait_until(lambda: cache.l1 is not None and cache.l1.get("tc:k") is MISSING)
    assert success_of(cache.get("k")) == "new"


def test_pattern_and_clear_messages_drop_matching_copies(
    cache: TieredCache, raw: redis.Redis
) -> None:
    success_of(cache.set_many({"user:1": "a", "user:2": "b", "team:1": "c"}))
    announce(raw, op="pattern", pattern="tc:user:*")
    wait_until(lambda: cache.l1 is not None and len(cache.l1) == 1)
    announce(raw, op="clear")
    wait_until(lambda: cache.l1 is not None and len(cache.l1) == 0)


def test_own_messages_are_ignored_and_garbage_is_survived(
    cache: TieredCache, raw: redis.Redis
) -> None:
    success_of(cache.set("k", "v"))
    heard = cache.bus.messages
    publish_to_processes(raw, encode(cache.bus.instance_id, "keys", ["tc:k"]))
    publish_to_processes(raw, b"\xff not json")
    publish_to_processes(raw, json.dumps({"not": "ours"}))
    wait_until(lambda: cache.bus.messages >= heard + 3)
    assert cache.l1 is not None
    assert cache.l1.get("tc:k") == "v"
    assert cache.bus.healthy


def test_each_write_publishes_one_message_and_fills_publish_none(
    cache: TieredCache, raw: redis.Redis
) -> None:
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    wait_until(lambda: pubsub.get_message(timeout=0.01) is None)

    def published() -> list[list[Any]]:
        messages = []
        while (message := pubsub.get_message(timeout=0.05)) is not None:
            messages.append(json.loads(message["data"]))
        return [m[1:] for m in messages]

    try:
        raw.set("tc:filled", "x")
        success_of(cache.get("filled"))
        success_of(cache.get_many(["filled", "absent"]))
        assert published() == []
        success_of(cache.set("a", "1"))
        success_of(cache.set_many({"b": "2", "c": "3"}))
        success_of(cache.increment("n"))
        success_of(cache.decrement("n"))
        success_of(cache.expire("a", 10))
        success_of(cache.delete("a"))
        success_of(cache.delete_pattern("b*"))
        success_of(cache.flush())
        assert published() == [
            ["keys", ["tc:a"], ""],
            ["keys", ["tc:b", "tc:c"], ""],
            ["keys", ["tc:n"], ""],
            ["keys", ["tc:n"], ""],
            ["keys", ["tc:a"], ""],
            ["keys", ["tc:a"], ""],
            ["pattern", [], "tc:b*"],
            ["pattern", [], "tc:*"],
        ]
    finally:
        pubsub.close()


# -- losing messages -----------------------------------------------------------------


def test_killed_pubsub_connection_reconnects_and_clears_l1(
    cache: TieredCache, raw: redis.Redis
) -> None:
    success_of(cache.set("k", "old"))
    raw.set("tc:k", "new")  # written, but its message is lost
    assert raw.client_kill_filter(_type="pubsub") == 1
    wait_until(lambda: cache.bus.reconnects == 1 and cache.bus.healthy)
    assert success_of(cache.get("k")) == "new"
    stats = resilience_stats(cache)
    assert (stats["bus_state"], stats["bus_reconnects"]) == ("up", 1)
    assert stats["bus_last_error"] is not None


def test_no_l1_fills_while_the_bus_is_deaf(cache: TieredCache, raw: redis.Redis) -> None:
    raw.set("tc:k", "v")
    cache.bus.healthy = False  # as the listener leaves it while disconnected
    assert success_of(cache.get("k")) == "v"
    success_of(cache.set("w", "v"))
    assert cache.l1 is not None
    assert len(cache.l1) == 0
    cache.bus.healthy = True
    assert success_of(cache.get("k")) == "v"
    assert cache.l1.get("tc:k") == "v"


def test_heartbeat_finds_a_silently_dead_connection(private_redis: RedisServer) -> None:
    cache = TieredCache.from_url(private_redis.url, l1_ttl=None, heartbeat_interval=0.1)
    try:
        success_of(cache.set("k", "v"))
        assert cache.bus.healthy
        os.kill(private_redis.pid, signal.SIGSTOP)  # the socket stays open, nothing answers
        try:
            wait_until(lambda: not cache.bus.healthy, timeout=3.0)
            assert resilience_stats(cache)["bus_state"] == "down"
        finally:
            os.kill(private_redis.pid, signal.SIGCONT)
        wait_until(lambda: cache.bus.healthy, timeout=5.0)
        assert cache.bus.reconnects >= 1
        assert cache.l1 is not None
        assert len(cache.l1) == 0  # anything could have changed while we were deaf
    finally:
        cache.close()


@pytest.mark.parametrize("protocol", ["", "?protocol=2"], ids=["resp3", "resp2"])
def test_heartbeat_pongs_keep_a_live_connection_up(redis_url: str, protocol: str) -> None:
    cache = TieredCache.from_url(redis_url + protocol, heartbeat_interval=0.02)
    try:
        time.sleep(0.25)  # a dozen heartbeats
        assert cache.bus.healthy
        assert cache.bus.reconnects == 0
    finally:
        cache.close()


def test_listener_restarts_after_redis_restarts(private_redis: RedisServer) -> None:
    cache = TieredCache.from_url(private_redis.url, l1_ttl=None)
    try:
        success_of(cache.set("k", "v"))
        private_redis.kill()
        wait_until(lambda: not cache.bus.healthy)
        assert cache.l1 is not None
        assert cache.l1.get("tc:k") == "v"  # kept while nobody can write through Redis
        private_redis.start()
        wait_until(lambda: cache.bus.healthy)
        assert len(cache.l1) == 0
        assert success_of(cache.get("k")) is None  # the restarted Redis is empty
    finally:
        cache.close()


def test_listener_starts_again_after_registry_reset(cache: TieredCache, raw: redis.Redis) -> None:
    success_of(cache.set("k", "v"))
    registry.reset()
    assert listener_threads() == []
    assert not cache.bus.healthy
    success_of(cache.set("k", "v2"))  # first use after the reset starts a new listener
    assert cache.bus.healthy
    raw.set("tc:k", "v3")
    announce(raw, "tc:k")
    wait_until(lambda: success_of(cache.get("k")) == "v3")


# -- the sequence guard, with a real invalidation arriving mid-read ------------------


def finish(flow: Any, reply: object, execute: Callable[[Any], object]) -> object:
    """Send `reply` into `flow`, run any further requests it makes; return its result."""
    try:
        while True:
            reply = execute(flow.send(reply))
    except StopIteration as stop:
        return stop.value


def test_read_that_began_before_an_invalidation_does_not_fill_l1(
    cache: TieredCache, raw: redis.Redis
) -> None:
    raw.set("tc:k", "old")
    policy = cache._assembly.policy
    flow = policy.get("tc:k", "default")
    request = next(flow)
    reply = cache._execute(request)  # the read has its answer: "old"

    heard = cache.bus.messages
    raw.set("tc:k", "new")  # meanwhile, another process writes and announces it
    announce(raw, "tc:k")
    wait_until(lambda: cache.bus.messages > heard)

    result = finish(flow, reply, cache._execute)
    assert success_of(result) == "old"  # this read returns what it read...
    assert cache.l1 is not None
    assert cache.l1.get("tc:k") is MISSING  # ...but may not keep it
    assert success_of(cache.get("k")) == "new"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda policy: policy.delete(["tc:k"], "default"), None),
        (lambda policy: policy.increment("tc:k", "default", 1), "8"),
        (lambda policy: policy.expire("tc:k", "default", 0.05), None),
    ],
    ids=["delete", "increment", "expire"],
)
def test_read_overlapping_a_change_in_this_process_cannot_refill_the_old_value(
    cache: TieredCache, raw: redis.Redis, change: Callable[[Any], Any], expected: str | None
) -> None:
    other = TieredCache.from_url(cache.options.url, l1_ttl=None)
    try:
        raw.set("tc:k", "7")
        changing = change(other._assembly.policy)
        request = next(changing)  # every L1 of the process dropped "k"; Redis not yet changed
        read = cache._assembly.policy.get("tc:k", "default")
        answer = cache._execute(next(read))  # so this read, begun after the drop, sees "7"
        with pytest.raises(StopIteration):
            changing.send(other._execute(request))  # now Redis changes
        finish(read, answer, cache._execute)  # a bare value: it asks for the TTL too
        assert cache.l1 is not None
        assert cache.l1.get("tc:k") is MISSING
        time.sleep(0.06)
        assert success_of(cache.get("k")) == expected
    finally:
        other.close()


def test_writes_reach_other_processes_but_never_wake_the_writers_own_listener(
    cache: TieredCache, raw: redis.Redis
) -> None:
    observer = raw.pubsub(ignore_subscribe_messages=True)
    observer.subscribe(CHANNEL)  # another process's channel
    wait_until(lambda: observer.get_message(timeout=0.01) is None)
    try:
        heard_before = cache.bus.messages
        for index in range(5):
            success_of(cache.set(f"k{index}", "v"))
        received = []
        wait_until(
            lambda: (
                received.append(observer.get_message(timeout=0.05))
                or (len([m for m in received if m]) >= 5)
            )
        )
        time.sleep(0.05)  # give a (wrong) self-delivery the time to arrive
        assert cache.bus.messages == heard_before
    finally:
        observer.close()

"""L1 coherence on a real Redis: tracking, broadcast, the in-process fan-out, and losses.

Other processes are played by plain redis-py clients, redis-cli and forked children;
tests/e2e/ runs a fleet of real processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from returns.result import Success

from tests.redis_server import RedisServer
from tests.tiercache.support import build, close, success_of
from tiercache import AsyncTieredCache, TieredCache, registry, resilience_stats
from tiercache.memory import MISSING


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Return once `condition()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.002)


def listener_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tiercache-listener")]


def held(cache: TieredCache | AsyncTieredCache, key: str) -> object:
    assert cache.l1 is not None
    return cache.l1.get("tc:" + key)


def hold(cache: TieredCache, key: str, value: str) -> None:
    """Read `key` until this cache's L1 holds `value` (a busy fill connection skips a fill)."""
    for _ in range(100):
        if success_of(cache.get(key)) == value and held(cache, key) == value:
            return
    pytest.fail(f"L1 never took {key!r}")


def client_id(raw: redis.Redis, name: str) -> int:
    [found] = [int(c["id"]) for c in raw.client_list() if c["name"] == name]
    return found


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def cache(redis_url: str) -> Iterator[TieredCache]:
    made = TieredCache.from_url(redis_url, l1_ttl=None, fill_connections=1)
    yield made
    made.close()


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
        assert reader.l1 is not None
        assert reader.l1.get("tc:k") == "7"
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


def test_no_l1_fills_while_the_bus_is_deaf(cache: TieredCache, raw: redis.Redis) -> None:
    raw.set("tc:k", "v")
    cache.bus.healthy = False  # as the listener leaves it while disconnected
    assert success_of(cache.get("k")) == "v"
    success_of(cache.set("w", "v"))
    assert cache.l1 is not None
    assert len(cache.l1) == 0  # a deaf process keeps nothing, not even its own writes
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
    # 0.1 s: a pong later than that on a busy shared machine would count as a failure.
    cache = TieredCache.from_url(redis_url + protocol, heartbeat_interval=0.1)
    try:
        time.sleep(0.6)  # half a dozen heartbeats
        assert cache.bus.healthy
        assert cache.bus.reconnects == 0
    finally:
        cache.close()


def test_listener_restarts_after_redis_restarts(private_redis: RedisServer) -> None:
    cache = TieredCache.from_url(private_redis.url, l1_ttl=None)
    try:
        success_of(cache.set("k", "v"))  # written through the fill connection: held
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
    hold(cache, "k", "v2")
    raw.set("tc:k", "v3")
    wait_until(lambda: success_of(cache.get("k")) == "v3")


# -- tracking: Redis tells the holders, whoever wrote -------------------------------------


def _redis_cli(raw: redis.Redis, *args: str) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    port = raw.connection_pool.connection_kwargs["port"]
    subprocess.run([cli, "-p", str(port), *args], check=True, capture_output=True)


WRITERS: dict[str, Callable[[TieredCache, redis.Redis], object]] = {
    "this cache": lambda c, r: c.set("k", "new"),
    "another cache": lambda c, r: TieredCache.from_url(
        c.options.url, l1_maxsize=0, invalidation=False
    ).set("k", "new"),
    "redis-py": lambda c, r: r.set("tc:k", "new"),
    "redis-cli": lambda c, r: _redis_cli(r, "SET", "tc:k", "new"),
    "expiry": lambda c, r: r.pexpire("tc:k", 20),
    "FLUSHDB": lambda c, r: r.flushdb(),
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_a_holder_drops_its_copy_whoever_changes_the_key(
    cache: TieredCache, raw: redis.Redis, write: Callable[[TieredCache, redis.Redis], object]
) -> None:
    raw.set("tc:k", "old")
    hold(cache, "k", "old")
    write(cache, raw)
    wait_until(lambda: held(cache, "k") != "old")
    wait_until(lambda: success_of(cache.get("k")) in ("new", None))  # expiry: once it is due


def test_a_holder_drops_a_copy_that_redis_evicts() -> None:
    with RedisServer("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        cache = TieredCache.from_url(server.url, l1_ttl=None)
        raw = redis.Redis.from_url(server.url)
        try:
            raw.set("tc:k", "old")
            hold(cache, "k", "old")
            filler = "x" * 10_000
            for index in range(2_000):  # far over maxmemory: "tc:k" is evicted on the way
                raw.set(f"fill:{index}", filler)
                if raw.exists("tc:k") == 0:
                    break
            assert raw.exists("tc:k") == 0
            wait_until(lambda: held(cache, "k") is MISSING)
        finally:
            cache.close()
            raw.close()


def test_non_holders_receive_nothing(cache: TieredCache, raw: redis.Redis) -> None:
    other = TieredCache.from_url(cache.options.url.replace("/0", "/1"), l1_ttl=None)
    try:
        raw.set("tc:held", "v")
        hold(cache, "held", "v")
        for index in range(100):  # keys nobody holds, by tiercache and by another program
            success_of(other.set(f"cold{index}", "v"))
            raw.set(f"tc:raw{index}", "v")
        raw.set("tc:held", "w")  # the one key this process holds
        wait_until(lambda: held(cache, "held") is MISSING)
        assert cache.bus.messages == 1
        assert other.bus.messages == 0  # holds nothing: hears nothing
    finally:
        other.close()


def test_own_writes_update_l1_at_once_and_are_not_echoed(
    cache: TieredCache, raw: redis.Redis
) -> None:
    raw.set("tc:k", "v0")
    hold(cache, "k", "v0")
    for index in range(1, 21):
        success_of(cache.set("k", f"v{index}"))
        assert held(cache, "k") == f"v{index}"  # no read needed
    raw.set("tc:k", "theirs")  # still tracked after our writes
    wait_until(lambda: held(cache, "k") is MISSING)
    assert cache.bus.messages == 1  # the other program's write; ours were not echoed


def test_a_write_by_another_alias_of_this_process_is_seen_at_once(redis_url: str) -> None:
    first = TieredCache.from_url(redis_url, l1_ttl=None)
    second = TieredCache.from_url(redis_url, l1_ttl=None, key_prefix="tc:")
    try:
        success_of(first.set("k", "1"))
        hold(second, "k", "1")
        success_of(first.set("k", "2"))
        assert success_of(second.get("k")) == "2"  # no waiting for Redis
    finally:
        first.close()
        second.close()


def test_killed_invalidation_connection_leaves_no_stale_read(
    cache: TieredCache, raw: redis.Redis
) -> None:
    raw.set("tc:k", "old")
    hold(cache, "k", "old")
    raw.client_kill_filter(_id=client_id(raw, f"tiercache-invalidate-{cache.bus.instance_id}"))
    raw.set("tc:k", "new")  # nobody can tell us now
    wait_until(lambda: cache.bus.reconnects >= 1 and cache.bus.healthy)
    assert success_of(cache.get("k")) == "new"
    hold(cache, "k", "new")  # the fill connection was re-armed to the new connection
    raw.set("tc:k", "newer")
    wait_until(lambda: held(cache, "k") is MISSING)


def test_killed_fill_connection_leaves_no_stale_read(redis_url: str, raw: redis.Redis) -> None:
    cache = TieredCache.from_url(
        redis_url, l1_ttl=None, fill_connections=1, heartbeat_interval=0.05
    )
    try:
        raw.set("tc:k", "old")
        hold(cache, "k", "old")
        raw.client_kill_filter(_id=client_id(raw, f"tiercache-fill-{cache.bus.instance_id}"))
        raw.set("tc:k", "new")  # Redis forgot who read it: no message comes
        assert cache.bus.tracking is not None
        wait_until(lambda: cache.bus.tracking is not None and cache.bus.tracking.lost >= 1)
        assert success_of(cache.get("k")) == "new"
    finally:
        cache.close()


def test_value_written_between_the_read_and_the_fill_is_not_kept(
    cache: TieredCache, raw: redis.Redis
) -> None:
    raw.set("tc:k", "old")
    tracking = cache.bus.tracking
    assert tracking is not None
    run = tracking.run

    def read_then_someone_writes(claim: Any) -> object:
        reply = run(claim)  # the tracked read answered "old"...
        heard = cache.bus.messages
        raw.set("tc:k", "new")  # ...then another program wrote, and Redis told us
        wait_until(lambda: cache.bus.messages > heard)
        return reply

    tracking.run = read_then_someone_writes  # type: ignore[method-assign]
    assert success_of(cache.get("k")) == "old"
    tracking.run = run  # type: ignore[method-assign]
    assert held(cache, "k") is MISSING
    assert success_of(cache.get("k")) == "new"


def test_a_cache_with_invalidation_built_after_one_without_still_hears_writes(
    redis_url: str, raw: redis.Redis
) -> None:
    first = TieredCache.from_url(redis_url, l1_ttl=None, invalidation=False)
    second = TieredCache.from_url(redis_url, l1_ttl=None)
    try:
        assert second.bus.mode == "tracking"
        raw.set("tc:k", "old")
        hold(second, "k", "old")
        raw.set("tc:k", "new")
        wait_until(lambda: held(second, "k") is MISSING)
    finally:
        first.close()
        second.close()


def test_two_modes_on_one_redis_are_refused_naming_both(redis_url: str) -> None:
    first = TieredCache.from_url(redis_url)
    try:
        with pytest.raises(ValueError, match=r"'broadcast'.*'tracking'"):
            TieredCache.from_url(redis_url, invalidation="broadcast")
    finally:
        first.close()


def test_a_forked_child_holds_and_hears_on_its_own_connections(
    cache: TieredCache, raw: redis.Redis
) -> None:
    raw.set("tc:k", "old")
    hold(cache, "k", "old")
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its L1 started empty, with connections of its own
        ok = held(cache, "k") is MISSING
        try:
            hold(cache, "k", "old")
            os.write(writer, b"h")
            wait_until(lambda: held(cache, "k") is MISSING)
            ok = ok and success_of(cache.get("k")) == "new"
        except BaseException:
            ok = False
            os.write(writer, b"x")
        os._exit(0 if ok else 1)
    assert os.read(reader, 1) == b"h"
    raw.set("tc:k", "new")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    wait_until(lambda: held(cache, "k") is MISSING)  # the parent heard it too


# -- broadcast: servers that refuse tracking ---------------------------------------------


def test_a_server_refusing_client_tracking_gets_broadcast_one_publish_per_call() -> None:
    with RedisServer("--rename-command", "CLIENT", '""') as server:
        cache = TieredCache.from_url(server.url, l1_ttl=None)
        raw = redis.Redis.from_url(server.url)
        observer = raw.pubsub(ignore_subscribe_messages=True)
        try:
            assert cache.bus.mode == "broadcast"
            assert cache.bus.requested == "tracking"
            assert resilience_stats(cache)["bus_mode"] == "broadcast"
            observer.subscribe(cache.bus.channel)
            wait_until(lambda: observer.get_message(timeout=0.01) is None)
            success_of(cache.set_many({f"k{i}": "v" for i in range(10)}))
            success_of(cache.set("one", "v"))
            messages: list[Any] = []
            wait_until(
                lambda: (
                    messages.append(observer.get_message(timeout=0.05))
                    or len([m for m in messages if m]) >= 2
                )
            )
            time.sleep(0.05)
            messages.append(observer.get_message(timeout=0.05))
            assert len([m for m in messages if m]) == 2  # one per call, never one per key

            raw.set("tc:other", "old")
            hold(cache, "other", "old")
            writer = TieredCache.from_url(server.url, l1_maxsize=0)
            pid = os.fork()
            if pid == 0:  # another process: its write is published, and we drop our copy
                os._exit(0 if isinstance(writer.set("other", "new"), Success) else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            wait_until(lambda: held(cache, "other") is MISSING)
        finally:
            observer.close()
            cache.close()
            raw.close()


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
    raw.set("tc:k", "new")  # meanwhile, another program writes: Redis tells us
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

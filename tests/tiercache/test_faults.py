"""Redis failures: every call answers with a value, never an exception, and recovers.

Each test has its own redis-server (`private_redis`) to kill, freeze or restart, and
a fake clock driving the circuit breaker, so recovery needs no sleeping.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from returns.result import Result, Success

from tests.redis_server import RedisServer
from tests.tiercache.conftest import MakeCache
from tests.tiercache.support import METHOD_NAMES, CacheUnderTest, failure_of
from tiercache import (
    CacheError,
    CacheReadOnly,
    CacheTimeout,
    CacheUnavailable,
    CircuitOpen,
)
from tiercache.memory import MISSING

Call = Callable[[CacheUnderTest], Awaitable[Result[Any, CacheError]]]

#: One call of each of the 15 methods, on keys no test below writes first.
CALLS: dict[str, Call] = {
    "get": lambda c: c.get("user:9"),
    "get_json": lambda c: c.get_json("user:9"),
    "set": lambda c: c.set("user:9", "v"),
    "set_json": lambda c: c.set_json("user:9", {"a": 1}),
    "delete": lambda c: c.delete("user:9"),
    "exists": lambda c: c.exists("user:9"),
    "expire": lambda c: c.expire("user:9", 10),
    "ttl": lambda c: c.ttl("user:9"),
    "increment": lambda c: c.increment("hits:9"),
    "decrement": lambda c: c.decrement("hits:9"),
    "flush": lambda c: c.flush(),
    "ping": lambda c: c.ping(),
    "delete_pattern": lambda c: c.delete_pattern("user:*"),
    "get_many": lambda c: c.get_many(["user:9", "user:8"]),
    "set_many": lambda c: c.set_many({"user:9": "a", "user:8": "b"}),
}

#: Writes that must not leave a stale L1 copy of `user:1` behind when they fail.
FAILING_WRITES: dict[str, Call] = {
    "set": lambda c: c.set("user:1", "new"),
    "set_json": lambda c: c.set_json("user:1", {"new": True}),
    "set_many": lambda c: c.set_many({"user:1": "new", "user:2": "new"}),
    "delete": lambda c: c.delete("user:1"),
    "expire": lambda c: c.expire("user:1", 10),
    "increment": lambda c: c.increment("user:1"),
}

LAYOUTS_WITH_REDIS = ["l2", "l1l2"]
COLOURS = ["sync", "async"]


@pytest.fixture(params=COLOURS)
def colour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=LAYOUTS_WITH_REDIS)
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def connections_received(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def held_in_l1(cache: CacheUnderTest, key: str) -> bool:
    l1 = cache.cache.l1
    return l1 is not None and l1.get(cache.prefix + key) is not MISSING


async def warm(cache: CacheUnderTest, *keys: str) -> None:
    """Read `keys` until L1 holds them (a read fills L1 only if its fill connection is free)."""
    for _ in range(100):
        if all(held_in_l1(cache, key) for key in keys):
            return
        await cache.get_many(list(keys))
    pytest.fail(f"L1 never took {keys}")


def test_every_call_covers_one_protocol_method() -> None:
    assert sorted(CALLS) == sorted(METHOD_NAMES)


# -- a dead server ---------------------------------------------------------------------


async def test_every_method_returns_a_failure_when_redis_is_killed(
    private_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    cache = await make_cache(layout, colour, private_redis.url)
    assert await cache.ping() == Success(True)
    private_redis.kill()
    # Twice: once while the breaker counts failures, once while it is open.
    for round_ in (1, 2):
        for name, call in CALLS.items():
            error = failure_of(await call(cache))
            assert isinstance(error, CacheUnavailable), f"round {round_}, {name}: {error!r}"


async def test_l1_keeps_serving_what_it_holds_while_redis_is_down(
    private_redis: RedisServer, make_cache: MakeCache, colour: str
) -> None:
    cache = await make_cache("l1l2", colour, private_redis.url)
    await cache.set("user:1", "alice")
    await cache.set_json("user:7", {"id": 7})
    await warm(cache, "user:1", "user:7")  # a write leaves L1 to the next (tracked) read
    private_redis.kill()
    for _ in range(5):  # before and after the circuit opens
        assert await cache.get("user:1") == Success("alice")
        assert await cache.get_json("user:7") == Success({"id": 7})
        assert await cache.exists("user:1") == Success(True)
        assert await cache.get_many(["user:1", "user:7"]) == Success(
            {"user:1": "alice", "user:7": '{"id":7}'}
        )
        assert isinstance(failure_of(await cache.get("user:2")), CacheUnavailable)


async def test_a_read_that_misses_l1_while_redis_is_down_is_a_failure_not_a_miss(
    private_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    cache = await make_cache(layout, colour, private_redis.url)
    private_redis.kill()
    assert isinstance(failure_of(await cache.get("user:1")), CacheUnavailable)
    error = failure_of(await cache.get_many(["user:1", "user:2"]))
    assert isinstance(error, CacheUnavailable)


@pytest.mark.parametrize("write", FAILING_WRITES.values(), ids=FAILING_WRITES.keys())
async def test_a_failed_write_evicts_the_key_from_l1(
    private_redis: RedisServer, make_cache: MakeCache, colour: str, write: Call
) -> None:
    cache = await make_cache("l1l2", colour, private_redis.url)
    await cache.set("user:1", "old")
    await warm(cache, "user:1")  # a write leaves L1 to the next (tracked) read
    private_redis.kill()
    assert isinstance(failure_of(await write(cache)), CacheUnavailable)
    assert not held_in_l1(cache, "user:1")
    # The stale copy is not served: the read has to ask Redis, which is down.
    assert isinstance(failure_of(await cache.get("user:1")), CacheUnavailable)


# -- recovery --------------------------------------------------------------------------


async def test_the_same_cache_object_works_again_after_redis_restarts(
    private_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    cache = await make_cache(layout, colour, private_redis.url)
    await cache.set("user:1", "before")
    private_redis.kill()
    for _ in range(5):
        failure_of(await cache.set("user:1", "during"))
    private_redis.restart()
    cache.clock.advance(cache.cache.options.breaker_reset)
    assert await cache.ping() == Success(True)
    assert await cache.get("user:1") == Success(None)  # the restarted server is empty
    assert await cache.set("user:1", "after") == Success(None)
    assert await cache.get("user:1") == Success("after")
    assert await cache.increment("hits:a") == Success(1)


async def test_one_failure_does_not_open_the_circuit(
    private_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    cache = await make_cache(layout, colour, private_redis.url)
    await cache.ping()
    private_redis.kill()
    assert isinstance(failure_of(await cache.get("user:1")), CacheUnavailable)
    private_redis.restart()
    # No time passes: a closed circuit lets the next call through at once.
    assert await cache.set("user:1", "after") == Success(None)
    assert await cache.get("user:1") == Success("after")


async def test_the_circuit_opens_after_the_threshold_and_then_skips_the_network(
    private_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    # No invalidation listener: its reconnects would be connections the cache did not make.
    cache = await make_cache(layout, colour, private_redis.url, invalidation=False)
    breaker = cache.cache.breaker
    assert breaker is not None
    await cache.set("user:1", "alice")
    private_redis.kill()
    for _ in range(breaker.failure_threshold):
        error = failure_of(await cache.get("user:2"))
        assert isinstance(error, CacheUnavailable)
        assert not isinstance(error, CircuitOpen)
    assert breaker.state == "open"
    if layout == "l1l2":
        assert await cache.get("user:1") == Success("alice")  # L1 still serves
    private_redis.restart()
    with redis.Redis.from_url(private_redis.url) as probe:
        before = connections_received(probe)
        for name, call in CALLS.items():
            assert isinstance(failure_of(await call(cache)), CircuitOpen), name
        assert connections_received(probe) == before  # not one connection attempt


async def test_a_successful_probe_closes_the_circuit_and_clears_l1(
    private_redis: RedisServer, make_cache: MakeCache, colour: str
) -> None:
    cache = await make_cache("l1l2", colour, private_redis.url)
    breaker = cache.cache.breaker
    assert breaker is not None
    await cache.set("user:1", "alice")
    private_redis.kill()
    for _ in range(breaker.failure_threshold):
        failure_of(await cache.get("user:2"))
    private_redis.restart()
    with redis.Redis.from_url(private_redis.url) as other_process:
        other_process.set("tc:user:1", "written while we could not hear")
    cache.clock.advance(breaker.reset_timeout - 0.01)
    assert isinstance(failure_of(await cache.get("user:2")), CircuitOpen)
    cache.clock.advance(0.01)
    assert breaker.state == "half_open"
    assert await cache.get("user:2") == Success(None)  # the probe
    assert breaker.state == "closed"
    assert cache.cache.l1 is not None
    assert len(cache.cache.l1) == 0
    assert await cache.get("user:1") == Success("written while we could not hear")


async def test_a_failed_probe_reopens_the_circuit_at_once(
    private_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    cache = await make_cache(layout, colour, private_redis.url)
    breaker = cache.cache.breaker
    assert breaker is not None
    private_redis.kill()
    for _ in range(breaker.failure_threshold):
        failure_of(await cache.get("user:1"))
    cache.clock.advance(breaker.reset_timeout)
    probe = failure_of(await cache.get("user:1"))
    assert isinstance(probe, CacheUnavailable)
    assert not isinstance(probe, CircuitOpen)
    assert isinstance(failure_of(await cache.get("user:1")), CircuitOpen)
    assert breaker.times_opened == 2


async def test_the_sync_and_async_caches_of_one_server_share_a_circuit(
    private_redis: RedisServer, make_cache: MakeCache
) -> None:
    sync_cache = await make_cache("l2", "sync", private_redis.url)
    async_cache = await make_cache("l2", "async", private_redis.url)
    private_redis.kill()
    for _ in range(3):
        failure_of(await sync_cache.get("user:1"))
    assert isinstance(failure_of(await async_cache.get("user:1")), CircuitOpen)


# -- a slow, read-only or full server --------------------------------------------------


async def test_a_server_that_does_not_answer_gives_a_timeout_failure(
    private_redis: RedisServer, make_cache: MakeCache, colour: str
) -> None:
    cache = await make_cache("l1l2", colour, private_redis.url, socket_timeout=0.05)
    await cache.set("user:1", "alice")
    os.kill(private_redis.pid, signal.SIGSTOP)
    try:
        assert isinstance(failure_of(await cache.get("user:2")), CacheTimeout)
        assert isinstance(failure_of(await cache.set("user:1", "bob")), CacheTimeout)
        assert not held_in_l1(cache, "user:1")
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)


async def test_a_read_only_replica_refuses_writes_without_opening_the_circuit(
    make_cache: MakeCache, layout: str, colour: str
) -> None:
    with RedisServer("--replicaof", "127.0.0.1", "1") as replica:
        cache = await make_cache(layout, colour, replica.url)
        for _ in range(5):
            for call in (
                lambda: cache.set("user:1", "alice"),
                lambda: cache.set_many({"user:1": "a"}),
                lambda: cache.increment("hits:a"),
                lambda: cache.delete("user:1"),
            ):
                assert isinstance(failure_of(await call()), CacheReadOnly)
        assert cache.cache.breaker is not None
        assert cache.cache.breaker.state == "closed"
        assert await cache.get("user:1") == Success(None)
        await cache.close()


async def test_a_full_server_refuses_writes_but_still_answers_reads(
    make_cache: MakeCache, layout: str, colour: str
) -> None:
    with RedisServer("--maxmemory", "1", "--maxmemory-policy", "noeviction") as full:
        cache = await make_cache(layout, colour, full.url)
        assert isinstance(failure_of(await cache.set("user:1", "alice")), CacheReadOnly)
        assert await cache.get("user:1") == Success(None)
        assert await cache.ping() == Success(True)
        await cache.close()


# -- passwords -------------------------------------------------------------------------

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    with RedisServer("--requirepass", PASSWORD) as server:
        yield server


def with_password(server: RedisServer, password: str, user: str = "") -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


async def test_a_cache_with_the_right_password_works(
    locked_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str
) -> None:
    cache = await make_cache(layout, colour, with_password(locked_redis, PASSWORD))
    assert await cache.set("user:1", "alice") == Success(None)
    assert await cache.get("user:1") == Success("alice")
    assert await cache.delete("user:1") == Success(True)


@pytest.mark.parametrize("password", ["wr0ng-Pa55", ""], ids=["wrong", "missing"])
async def test_a_refused_password_is_a_failure_that_does_not_reveal_it(
    locked_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str, password: str
) -> None:
    url = with_password(locked_redis, password) if password else locked_redis.url
    cache = await make_cache(layout, colour, url)
    for name, call in CALLS.items():
        error = failure_of(await call(cache))
        assert isinstance(error, CacheUnavailable), f"{name}: {error!r}"
        if password:
            assert password not in str(error)
            assert password not in repr(error)
        assert PASSWORD not in str(error)


async def test_failures_of_a_dead_password_server_do_not_reveal_the_password(
    make_cache: MakeCache, layout: str, colour: str
) -> None:
    with RedisServer("--requirepass", PASSWORD) as server:
        cache = await make_cache(layout, colour, with_password(server, PASSWORD, "default"))
        await cache.set("user:1", "alice")
        server.kill()
        for name, call in CALLS.items():
            error = failure_of(await call(cache))
            assert PASSWORD not in str(error), name
        await cache.close()


@pytest.mark.parametrize("user", ["", "default"])
async def test_repr_and_location_never_show_the_password(
    locked_redis: RedisServer, make_cache: MakeCache, layout: str, colour: str, user: str
) -> None:
    cache = await make_cache(layout, colour, with_password(locked_redis, PASSWORD, user))
    assert PASSWORD not in repr(cache.cache)
    assert PASSWORD not in cache.cache.options.location
    assert PASSWORD not in repr(cache.cache.options)
    assert "***" in cache.cache.options.location
    assert str(locked_redis.port) in cache.cache.options.location


async def test_a_wrong_password_does_not_open_the_circuit_of_the_right_one(
    locked_redis: RedisServer, make_cache: MakeCache, colour: str
) -> None:
    good = await make_cache("l2", colour, with_password(locked_redis, PASSWORD))
    bad = await make_cache("l2", colour, with_password(locked_redis, "wr0ng-Pa55"))
    for _ in range(5):
        failure_of(await bad.get("user:1"))
    assert await good.set("user:1", "alice") == Success(None)
    assert await good.get("user:1") == Success("alice")

"""Bad input is answered with `Failure(<the CacheError that names it>)`, storing nothing.

Runs over every tier layout in both colours (the `cache` and `l2_cache` fixtures).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from returns.result import Result, Success

from tests.tiercache.support import CacheUnderTest, failure_of
from tiercache import (
    CacheError,
    CorruptData,
    InvalidKey,
    InvalidTTL,
    NotAnInteger,
    NotSerializable,
    ValueTooLarge,
)
from tiercache.keys import MAX_KEY_LENGTH, MAX_TTL_SECONDS

KeyedCall = Callable[[CacheUnderTest, Any], Awaitable[Result[Any, CacheError]]]

#: Every method that takes one key, called with that key and otherwise good arguments.
KEYED_CALLS: dict[str, KeyedCall] = {
    "get": lambda c, key: c.get(key),
    "get_json": lambda c, key: c.get_json(key),
    "set": lambda c, key: c.set(key, "value"),
    "set_json": lambda c, key: c.set_json(key, {"a": 1}),
    "delete": lambda c, key: c.delete(key),
    "exists": lambda c, key: c.exists(key),
    "expire": lambda c, key: c.expire(key, 10),
    "ttl": lambda c, key: c.ttl(key),
    "increment": lambda c, key: c.increment(key),
    "decrement": lambda c, key: c.decrement(key),
    "get_many": lambda c, key: c.get_many(["good", key]),
    "set_many": lambda c, key: c.set_many({"other": "v", key: "value"}),
}

BAD_KEYS = {
    "empty": "",
    "int": 1,
    "bytes": b"user:1",
    "none": None,
    "too-long": "k" * (MAX_KEY_LENGTH + 1),
    "newline": "user:1\nFLUSHALL",
    "nul": "user\x00:1",
    "tab": "user\t1",
    "del": "user\x7f1",
}

BAD_TTLS = {
    "zero": 0,
    "negative": -5,
    "float": 1.5,
    "true": True,
    "false": False,
    "too-large": MAX_TTL_SECONDS + 1,
    "str": "10",
}


async def seed(cache: CacheUnderTest) -> None:
    """Store a few values with and without TTLs."""
    await cache.set("good", "kept")
    await cache.set("user:1", "alice", ttl=100)
    await cache.set("hits:a", "5")


async def stored(cache: CacheUnderTest) -> object:
    """Return everything the cache and Redis hold, to compare before and after."""
    values = await cache.get_many(["good", "user:1", "hits:a", "other"])
    ttls = [await cache.ttl(key) for key in ("good", "user:1", "hits:a")]
    return values, ttls, cache.redis_snapshot()


def assert_names_key(error: CacheError, key: str) -> None:
    """Check that `error` names the caller's `key`, not the prefixed key Redis holds."""
    assert repr(key) in str(error), f"{error} does not name the key {key!r}"
    assert error.key == key


# -- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
async def test_every_keyed_method_refuses_an_invalid_key_and_stores_nothing(
    cache: CacheUnderTest, bad_key: object
) -> None:
    await seed(cache)
    before = await stored(cache)
    for name, call in KEYED_CALLS.items():
        error = failure_of(await call(cache, bad_key))
        assert isinstance(error, InvalidKey), f"{name}: {error!r}"
    assert await stored(cache) == before


@pytest.mark.parametrize("bad_key", ["user:1\nx", "tab\there"])
async def test_an_invalid_key_error_names_the_key(cache: CacheUnderTest, bad_key: str) -> None:
    error = failure_of(await cache.set(bad_key, "v"))
    assert repr(bad_key) in str(error)


async def test_a_key_of_exactly_the_maximum_length_is_accepted(cache: CacheUnderTest) -> None:
    key = "k" * MAX_KEY_LENGTH
    assert await cache.set(key, "v") == Success(None)
    assert await cache.get(key) == Success("v")


@pytest.mark.parametrize("pattern", ["", 1, None, "user:\n*", b"user:*"])
async def test_delete_pattern_refuses_an_invalid_pattern(
    cache: CacheUnderTest, pattern: object
) -> None:
    await seed(cache)
    before = await stored(cache)
    assert isinstance(failure_of(await cache.delete_pattern(pattern)), InvalidKey)
    assert await stored(cache) == before


# -- TTLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", BAD_TTLS.values(), ids=BAD_TTLS.keys())
async def test_every_method_with_a_ttl_refuses_an_invalid_one_and_changes_nothing(
    cache: CacheUnderTest, ttl: object
) -> None:
    await seed(cache)
    before = await stored(cache)
    calls: dict[str, Callable[[], Awaitable[Result[Any, CacheError]]]] = {
        "set": lambda: cache.set("user:1", "changed", ttl=ttl),
        "set_json": lambda: cache.set_json("user:1", {"changed": True}, ttl=ttl),
        "expire": lambda: cache.expire("user:1", ttl),
        "set_many": lambda: cache.set_many({"user:1": "changed", "other": "new"}, ttl=ttl),
    }
    for name, call in calls.items():
        error = failure_of(await call())
        assert isinstance(error, InvalidTTL), f"{name}: {error!r}"
        if name != "set_many":
            assert_names_key(error, "user:1")
    assert await stored(cache) == before


async def test_the_largest_ttl_is_accepted(cache: CacheUnderTest) -> None:
    assert await cache.set("user:1", "v", ttl=MAX_TTL_SECONDS) == Success(None)
    assert await cache.ttl("user:1") == Success(MAX_TTL_SECONDS)


# -- values ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 1.5, b"bytes", None, ["a"], {"a": 1}, True])
async def test_set_refuses_a_value_that_is_not_str(cache: CacheUnderTest, value: object) -> None:
    await seed(cache)
    before = await stored(cache)
    error = failure_of(await cache.set("user:1", value))  # type: ignore[arg-type]
    assert isinstance(error, NotSerializable)
    assert_names_key(error, "user:1")
    assert await stored(cache) == before


async def test_set_refuses_text_that_is_not_encodable(cache: CacheUnderTest) -> None:
    error = failure_of(await cache.set("user:1", "lone \ud800 surrogate"))
    assert isinstance(error, NotSerializable)
    assert await cache.exists("user:1") == Success(False)


async def test_set_many_with_one_bad_value_stores_none_of_the_items(cache: CacheUnderTest) -> None:
    await seed(cache)
    before = await stored(cache)
    error = failure_of(await cache.set_many({"other": "fine", "user:1": 7}))  # type: ignore[dict-item]
    assert isinstance(error, NotSerializable)
    assert_names_key(error, "user:1")
    assert await stored(cache) == before


@pytest.mark.parametrize(
    "value",
    [{"tags": {1, 2}}, {"when": object()}, {"raw": b"bytes"}, {1j: "complex key"}],
    ids=["set", "object", "bytes", "complex-key"],
)
async def test_set_json_refuses_a_dict_that_json_cannot_encode(
    cache: CacheUnderTest, value: dict[str, object]
) -> None:
    await seed(cache)
    before = await stored(cache)
    error = failure_of(await cache.set_json("user:1", value))
    assert isinstance(error, NotSerializable)
    assert_names_key(error, "user:1")
    assert await stored(cache) == before


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_set_json_refuses_nan_and_infinity(cache: CacheUnderTest, number: float) -> None:
    await seed(cache)
    before = await stored(cache)
    error = failure_of(await cache.set_json("user:1", {"score": number}))
    assert isinstance(error, NotSerializable)
    assert_names_key(error, "user:1")
    assert await stored(cache) == before


@pytest.mark.parametrize("value", [["a", "list"], "text", None, 3])
async def test_set_json_refuses_a_value_that_is_not_a_dict(
    cache: CacheUnderTest, value: object
) -> None:
    error = failure_of(await cache.set_json("user:1", value))  # type: ignore[arg-type]
    assert isinstance(error, NotSerializable)
    assert_names_key(error, "user:1")
    assert await cache.get("user:1") == Success(None)


async def test_values_over_max_value_bytes_are_refused_and_change_nothing(
    cache: CacheUnderTest,
) -> None:
    small = await cache.sibling(max_value_bytes=100)
    await seed(small)
    before = await stored(small)
    calls: dict[str, Callable[[], Awaitable[Result[Any, CacheError]]]] = {
        "set": lambda: small.set("user:1", "x" * 101),
        "set-multibyte": lambda: small.set("user:1", "é" * 51),  # 51 characters, 102 bytes
        "set_json": lambda: small.set_json("user:1", {"text": "x" * 100}),
        "set_many": lambda: small.set_many({"other": "fine", "user:1": "x" * 101}),
    }
    for name, call in calls.items():
        error = failure_of(await call())
        assert isinstance(error, ValueTooLarge), f"{name}: {error!r}"
        assert_names_key(error, "user:1")
    assert await stored(small) == before


async def test_a_value_of_exactly_max_value_bytes_is_accepted(cache: CacheUnderTest) -> None:
    small = await cache.sibling(max_value_bytes=100)
    assert await small.set("user:1", "x" * 100) == Success(None)
    assert await small.get("user:1") == Success("x" * 100)


# -- increment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["abc", "1.5", "", " 1", "1 ", "+1", "007", "-0", "1e3", "٣", "9" * 30, str(2**63)]
)
async def test_increment_of_a_value_that_is_not_an_integer_fails_and_keeps_it(
    cache: CacheUnderTest, value: str
) -> None:
    await cache.set("hits:a", value)
    for call in (lambda: cache.increment("hits:a"), lambda: cache.decrement("hits:a", 2)):
        error = failure_of(await call())
        assert isinstance(error, NotAnInteger)
        assert_names_key(error, "hits:a")
    assert await cache.get("hits:a") == Success(value)


@pytest.mark.parametrize("amount", [1.5, "1", True, None, 2**64])
async def test_increment_refuses_an_amount_that_is_not_a_64_bit_int(
    cache: CacheUnderTest, amount: object
) -> None:
    await seed(cache)
    before = await stored(cache)
    for call in (
        lambda: cache.increment("hits:a", amount),
        lambda: cache.decrement("hits:a", amount),
    ):
        error = failure_of(await call())
        assert isinstance(error, NotAnInteger)
        assert_names_key(error, "hits:a")
    assert await stored(cache) == before


async def test_increment_past_the_64_bit_range_fails_and_keeps_the_value(
    cache: CacheUnderTest,
) -> None:
    top = str(2**63 - 1)
    await cache.set("hits:a", top)
    error = failure_of(await cache.increment("hits:a"))
    assert isinstance(error, NotAnInteger)
    assert "overflow" in str(error)
    assert "not an integer" not in str(error)
    assert_names_key(error, "hits:a")
    assert await cache.get("hits:a") == Success(top)


# -- what Redis holds ------------------------------------------------------------------


async def test_get_json_of_text_that_is_not_a_json_object_is_corrupt_data(
    cache: CacheUnderTest,
) -> None:
    for text in ("{not json", "[1, 2]", '"string"', "12"):
        await cache.set("user:1", text)
        error = failure_of(await cache.get_json("user:1"))
        assert isinstance(error, CorruptData)
        assert_names_key(error, "user:1")


async def test_corrupt_json_planted_in_redis_is_corrupt_data_and_counted(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    l2_cache.redis.set("tc:user:1", b'{"id": 1')
    error = failure_of(await l2_cache.get_json("user:1"))
    assert isinstance(error, CorruptData)
    assert_names_key(error, "user:1")
    assert l2_cache.cache.metrics.get_stats("user")["errors"] == 1


async def test_bytes_that_are_not_utf8_read_as_a_miss_and_count_an_error(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    l2_cache.redis.set("tc:user:1", b"\xff\xfe\x00garbage")
    assert await l2_cache.get("user:1") == Success(None)
    assert await l2_cache.get_many(["user:1"]) == Success({"user:1": None})
    assert await l2_cache.get_json("user:1") == Success(None)
    stats = l2_cache.cache.metrics.get_stats("user")
    assert stats["errors"] == 3
    assert stats["misses"] == 3
    assert l2_cache.cache.l1 is None or len(l2_cache.cache.l1) == 0


async def test_a_key_holding_another_redis_type_is_corrupt_data(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    l2_cache.redis.lpush("tc:user:1", "a", "b")
    for call in (lambda: l2_cache.get("user:1"), lambda: l2_cache.get_json("user:1")):
        error = failure_of(await call())
        assert isinstance(error, CorruptData)
        assert_names_key(error, "user:1")
    assert l2_cache.redis.lrange("tc:user:1", 0, -1) == [b"b", b"a"]
    assert l2_cache.cache.metrics.get_stats("user")["errors"] == 2


async def test_increment_of_a_key_holding_another_redis_type_fails_and_keeps_it(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    l2_cache.redis.lpush("tc:hits:a", "a")
    error = failure_of(await l2_cache.increment("hits:a"))
    assert isinstance(error, CorruptData)
    assert_names_key(error, "hits:a")
    assert l2_cache.redis.lrange("tc:hits:a", 0, -1) == [b"a"]


# -- bad collections -------------------------------------------------------------------


@pytest.mark.parametrize("keys", [None, 5], ids=["none", "int"])
async def test_get_many_refuses_keys_that_are_not_iterable(
    cache: CacheUnderTest, keys: object
) -> None:
    error = failure_of(await cache.get_many(keys))  # type: ignore[arg-type]
    assert isinstance(error, InvalidKey)


@pytest.mark.parametrize(
    "mapping", [None, ["user:1"], [("user:1", "v")]], ids=["none", "list", "pairs"]
)
async def test_set_many_refuses_a_mapping_that_is_not_a_mapping(
    cache: CacheUnderTest, mapping: object
) -> None:
    await seed(cache)
    before = await stored(cache)
    error = failure_of(await cache.set_many(mapping))  # type: ignore[arg-type]
    assert isinstance(error, NotSerializable | InvalidKey)
    assert await stored(cache) == before


async def test_a_key_holding_another_redis_type_does_not_fail_get_many_for_the_others(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    l2_cache.redis.lpush("tc:user:1", "a")
    await l2_cache.set("user:2", "bob")
    assert await l2_cache.get_many(["user:1", "user:2"]) == Success(
        {"user:1": None, "user:2": "bob"}
    )

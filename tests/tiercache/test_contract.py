"""The contract of the 15 cache methods, run over every tier layout in both colours.

Each test runs six times: L1 only, L2 only and L1 ahead of L2, as `TieredCache`
and as `AsyncTieredCache` (see the `cache` fixture).
"""

from __future__ import annotations

import inspect

from returns.result import Success

from tests.tiercache.support import METHOD_NAMES, CacheUnderTest, success_of
from tiercache import AsyncTieredCache, CacheProtocol, SyncCacheProtocol, TieredCache

# -- get / set -------------------------------------------------------------------------


async def test_get_of_an_absent_key_is_success_none(cache: CacheUnderTest) -> None:
    assert await cache.get("user:absent") == Success(None)


async def test_set_then_get_returns_the_value(cache: CacheUnderTest) -> None:
    assert await cache.set("user:1", "alice") == Success(None)
    assert await cache.get("user:1") == Success("alice")


async def test_set_replaces_the_previous_value(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    await cache.set("user:1", "bob")
    assert await cache.get("user:1") == Success("bob")


async def test_an_empty_string_is_a_hit_not_a_miss(cache: CacheUnderTest) -> None:
    await cache.set("blank", "")
    assert await cache.get("blank") == Success("")
    assert await cache.exists("blank") == Success(True)


async def test_unicode_text_round_trips(cache: CacheUnderTest) -> None:
    text = "héllo wörld ✓ 你好 🎉"
    await cache.set("greeting", text)
    assert await cache.get("greeting") == Success(text)


async def test_a_value_written_with_a_ttl_is_gone_once_the_ttl_has_passed(
    cache: CacheUnderTest,
) -> None:
    await cache.set("session:1", "token", ttl=5)
    cache.let_time_pass(4)
    assert await cache.get("session:1") == Success("token")
    cache.let_time_pass(1.5)
    assert await cache.get("session:1") == Success(None)
    assert await cache.exists("session:1") == Success(False)


async def test_a_second_cache_instance_on_the_same_store_reads_the_value(
    l2_cache: CacheUnderTest,
) -> None:
    other = await l2_cache.sibling()
    await l2_cache.set("user:1", "alice")
    assert await other.get("user:1") == Success("alice")


async def test_keys_live_in_redis_under_the_key_prefix(l2_cache: CacheUnderTest) -> None:
    await l2_cache.set("user:1", "alice")
    assert l2_cache.redis is not None
    assert l2_cache.redis.get("tc:user:1") == b"@0000000000000alice"  # no expiry
    assert l2_cache.redis.get("user:1") is None


# -- ttl / expire ----------------------------------------------------------------------


async def test_ttl_reports_the_seconds_left(cache: CacheUnderTest) -> None:
    await cache.set("session:1", "token", ttl=100)
    assert await cache.ttl("session:1") == Success(100)
    cache.let_time_pass(30)
    assert await cache.ttl("session:1") == Success(70)


async def test_ttl_is_none_for_a_key_without_ttl(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    assert await cache.ttl("user:1") == Success(None)


async def test_ttl_is_none_for_an_absent_key(cache: CacheUnderTest) -> None:
    assert await cache.ttl("user:absent") == Success(None)


async def test_expire_of_an_absent_key_is_false_and_creates_nothing(
    cache: CacheUnderTest,
) -> None:
    assert await cache.expire("user:absent", 10) == Success(False)
    assert await cache.exists("user:absent") == Success(False)


async def test_expire_gives_an_existing_key_a_new_ttl(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    assert await cache.expire("user:1", 50) == Success(True)
    assert await cache.ttl("user:1") == Success(50)
    assert await cache.get("user:1") == Success("alice")
    cache.let_time_pass(51)
    assert await cache.get("user:1") == Success(None)


async def test_expire_can_shorten_a_ttl(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice", ttl=1000)
    assert await cache.expire("user:1", 5) == Success(True)
    cache.let_time_pass(6)
    assert await cache.get("user:1") == Success(None)


# -- delete / exists -------------------------------------------------------------------


async def test_delete_of_an_existing_key_is_true_and_removes_it(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    assert await cache.delete("user:1") == Success(True)
    assert await cache.get("user:1") == Success(None)
    assert await cache.exists("user:1") == Success(False)


async def test_delete_of_an_absent_key_is_false(cache: CacheUnderTest) -> None:
    assert await cache.delete("user:absent") == Success(False)


async def test_delete_twice_is_true_then_false(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    assert await cache.delete("user:1") == Success(True)
    assert await cache.delete("user:1") == Success(False)


async def test_exists_is_true_only_for_stored_keys(cache: CacheUnderTest) -> None:
    assert await cache.exists("user:1") == Success(False)
    await cache.set("user:1", "alice")
    assert await cache.exists("user:1") == Success(True)
    assert await cache.exists("user:2") == Success(False)


# -- increment / decrement -------------------------------------------------------------


async def test_increment_of_an_absent_key_starts_at_zero(cache: CacheUnderTest) -> None:
    assert await cache.increment("hits:a") == Success(1)
    assert await cache.increment("hits:b", 5) == Success(5)


async def test_increment_adds_the_amount_and_get_reads_the_number_as_text(
    cache: CacheUnderTest,
) -> None:
    await cache.set("hits:a", "10")
    assert await cache.increment("hits:a") == Success(11)
    assert await cache.increment("hits:a", 7) == Success(18)
    assert await cache.increment("hits:a", -20) == Success(-2)
    assert await cache.get("hits:a") == Success("-2")


async def test_decrement_subtracts_and_an_absent_key_starts_at_zero(
    cache: CacheUnderTest,
) -> None:
    assert await cache.decrement("stock:a") == Success(-1)
    assert await cache.decrement("stock:a", 4) == Success(-5)
    await cache.set("stock:b", "10")
    assert await cache.decrement("stock:b", 3) == Success(7)
    assert await cache.get("stock:b") == Success("7")


async def test_increment_sees_a_value_written_after_an_earlier_increment(
    cache: CacheUnderTest,
) -> None:
    assert await cache.increment("hits:a") == Success(1)
    await cache.set("hits:a", "100")
    assert await cache.increment("hits:a") == Success(101)
    assert await cache.get("hits:a") == Success("101")


async def test_concurrent_increments_lose_no_update(cache: CacheUnderTest) -> None:
    results = await cache.concurrently("increment", [("hits:a",)] * 200)
    assert sorted(success_of(result) for result in results) == list(range(1, 201))
    assert await cache.get("hits:a") == Success("200")


async def test_increment_keeps_the_ttl_of_the_key(cache: CacheUnderTest) -> None:
    await cache.set("hits:a", "1", ttl=100)
    await cache.increment("hits:a")
    assert await cache.ttl("hits:a") == Success(100)
    cache.let_time_pass(101)
    assert await cache.get("hits:a") == Success(None)


async def test_increments_from_two_cache_instances_add_up(l2_cache: CacheUnderTest) -> None:
    other = await l2_cache.sibling()
    await l2_cache.increment("hits:a", 2)
    await other.increment("hits:a", 3)
    assert await l2_cache.get("hits:a") == Success("5")
    assert await other.get("hits:a") == Success("5")


# -- flush / delete_pattern ------------------------------------------------------------


async def test_flush_removes_every_key_of_this_cache(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    await cache.set_many({"user:2": "bob", "order:1": "book"})
    await cache.increment("hits:a")
    assert await cache.flush() == Success(None)
    assert await cache.get_many(["user:1", "user:2", "order:1", "hits:a"]) == Success(
        {"user:1": None, "user:2": None, "order:1": None, "hits:a": None}
    )


async def test_flush_leaves_keys_outside_the_prefix_in_redis(l2_cache: CacheUnderTest) -> None:
    assert l2_cache.redis is not None
    foreign = {b"user:1": b"foreign", b"tcx:user:1": b"near", b"other:tc:user:1": b"mid"}
    for key, value in foreign.items():
        l2_cache.redis.set(key, value)
    await l2_cache.set("user:1", "ours")
    await l2_cache.flush()
    assert {key: l2_cache.redis.get(key) for key in foreign} == foreign
    assert l2_cache.redis.exists("tc:user:1") == 0


async def test_flush_does_not_treat_glob_characters_in_the_prefix_as_wildcards(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    starry = await l2_cache.sibling(key_prefix="t*:")
    l2_cache.redis.set("tx:user:1", "foreign")
    await starry.set("user:1", "ours")
    await starry.flush()
    assert l2_cache.redis.get("tx:user:1") == b"foreign"
    assert await starry.get("user:1") == Success(None)


async def test_flush_leaves_the_keys_of_a_cache_with_another_prefix(
    l2_cache: CacheUnderTest,
) -> None:
    other = await l2_cache.sibling(key_prefix="other:")
    await other.set("user:1", "theirs")
    await l2_cache.set("user:1", "ours")
    await l2_cache.flush()
    assert await other.get("user:1") == Success("theirs")
    assert await l2_cache.get("user:1") == Success(None)


async def test_delete_pattern_removes_the_matching_keys_and_counts_them(
    cache: CacheUnderTest,
) -> None:
    await cache.set_many({"user:1": "a", "user:2": "b", "user:10": "c", "order:1": "d"})
    assert await cache.delete_pattern("user:*") == Success(3)
    assert await cache.get_many(["user:1", "user:2", "user:10", "order:1"]) == Success(
        {"user:1": None, "user:2": None, "user:10": None, "order:1": "d"}
    )


async def test_delete_pattern_of_no_match_is_zero(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "a")
    assert await cache.delete_pattern("order:*") == Success(0)
    assert await cache.get("user:1") == Success("a")


async def test_delete_pattern_honours_question_mark_and_character_classes(
    cache: CacheUnderTest,
) -> None:
    await cache.set_many({"user:1": "a", "user:2": "b", "user:3": "c", "user:10": "d"})
    assert await cache.delete_pattern("user:[12]") == Success(2)
    assert await cache.delete_pattern("user:?") == Success(1)
    assert await cache.get_many(["user:1", "user:2", "user:3", "user:10"]) == Success(
        {"user:1": None, "user:2": None, "user:3": None, "user:10": "d"}
    )


async def test_delete_pattern_leaves_matching_keys_outside_the_prefix(
    l2_cache: CacheUnderTest,
) -> None:
    assert l2_cache.redis is not None
    l2_cache.redis.set("user:1", "foreign")
    l2_cache.redis.set("other:user:1", "foreign")
    await l2_cache.set("user:1", "ours")
    assert await l2_cache.delete_pattern("*user:*") == Success(1)
    assert l2_cache.redis.get("user:1") == b"foreign"
    assert l2_cache.redis.get("other:user:1") == b"foreign"


async def test_delete_pattern_reaches_keys_this_instance_never_held(
    l2_cache: CacheUnderTest,
) -> None:
    other = await l2_cache.sibling()
    await other.set_many({f"user:{n}": "x" for n in range(1200)})
    assert await l2_cache.delete_pattern("user:*") == Success(1200)
    assert l2_cache.redis is not None
    assert l2_cache.redis.dbsize() == 0


# -- get_many / set_many ---------------------------------------------------------------


async def test_get_many_answers_every_requested_key_with_none_for_misses(
    cache: CacheUnderTest,
) -> None:
    await cache.set("user:1", "alice")
    await cache.set("user:3", "carol")
    assert await cache.get_many(["user:1", "user:2", "user:3"]) == Success(
        {"user:1": "alice", "user:2": None, "user:3": "carol"}
    )


async def test_get_many_of_no_keys_is_an_empty_dict(cache: CacheUnderTest) -> None:
    assert await cache.get_many([]) == Success({})


async def test_get_many_accepts_any_iterable_of_keys(cache: CacheUnderTest) -> None:
    await cache.set("user:1", "alice")
    assert await cache.get_many(key for key in ("user:1", "user:2")) == Success(
        {"user:1": "alice", "user:2": None}
    )


async def test_set_many_stores_every_item(cache: CacheUnderTest) -> None:
    items = {"user:1": "alice", "user:2": "bob", "order:1": "book"}
    assert await cache.set_many(items) == Success(None)
    assert await cache.get_many(list(items)) == Success(items)
    assert await cache.ttl("user:1") == Success(None)


async def test_set_many_with_ttl_gives_every_item_that_ttl(cache: CacheUnderTest) -> None:
    await cache.set_many({"user:1": "alice", "user:2": "bob"}, ttl=30)
    assert await cache.ttl("user:1") == Success(30)
    assert await cache.ttl("user:2") == Success(30)
    cache.let_time_pass(31)
    assert await cache.get_many(["user:1", "user:2"]) == Success({"user:1": None, "user:2": None})


async def test_set_many_of_nothing_succeeds(cache: CacheUnderTest) -> None:
    assert await cache.set_many({}) == Success(None)


# -- ping / json -----------------------------------------------------------------------


async def test_ping_is_true(cache: CacheUnderTest) -> None:
    assert await cache.ping() == Success(True)


async def test_set_json_then_get_json_round_trips_a_nested_object(cache: CacheUnderTest) -> None:
    value = {"id": 7, "name": "Zoë", "tags": ["a", "b"], "nested": {"ok": True, "n": None}}
    assert await cache.set_json("user:7", value) == Success(None)
    assert await cache.get_json("user:7") == Success(value)


async def test_get_json_of_an_absent_key_is_none(cache: CacheUnderTest) -> None:
    assert await cache.get_json("user:absent") == Success(None)


async def test_set_json_with_ttl_expires(cache: CacheUnderTest) -> None:
    await cache.set_json("user:7", {"id": 7}, ttl=10)
    assert await cache.ttl("user:7") == Success(10)
    cache.let_time_pass(11)
    assert await cache.get_json("user:7") == Success(None)


async def test_mutating_a_returned_json_object_does_not_change_the_cached_one(
    cache: CacheUnderTest,
) -> None:
    await cache.set_json("user:7", {"tags": ["a"]})
    first = success_of(await cache.get_json("user:7"))
    first["tags"].append("mutated")
    first["new"] = 1
    assert await cache.get_json("user:7") == Success({"tags": ["a"]})


async def test_mutating_a_stored_dict_after_set_json_does_not_change_the_cached_one(
    cache: CacheUnderTest,
) -> None:
    value: dict[str, object] = {"tags": ["a"]}
    await cache.set_json("user:7", value)
    value["tags"] = ["changed"]
    assert await cache.get_json("user:7") == Success({"tags": ["a"]})


async def test_json_written_by_set_json_is_readable_by_get(cache: CacheUnderTest) -> None:
    await cache.set_json("user:7", {"id": 7})
    assert await cache.get("user:7") == Success('{"id":7}')


# -- protocols -------------------------------------------------------------------------


async def test_each_shell_implements_the_protocol_of_its_colour(cache: CacheUnderTest) -> None:
    if cache.colour == "sync":
        assert isinstance(cache.cache, SyncCacheProtocol)
        assert isinstance(cache.cache, TieredCache)
    else:
        assert isinstance(cache.cache, CacheProtocol)
        assert isinstance(cache.cache, AsyncTieredCache)


async def test_every_method_of_a_shell_has_its_colour(cache: CacheUnderTest) -> None:
    colours = {
        name: inspect.iscoroutinefunction(getattr(cache.cache, name)) for name in METHOD_NAMES
    }
    assert colours == dict.fromkeys(METHOD_NAMES, cache.colour == "async")

"""The Django backend as a user sees it through `caches[...]`, on real Redis servers."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from django_tiercache.serializers import SignedPickleSerializer
from tests.django_tiercache.django_setup import tiered_caches
from tests.redis_server import RedisServer
from tiercache import registry

BACKEND = "django_tiercache.backend.TieredCache"


def two_aliases(location: str, **options: Any) -> dict[str, dict[str, Any]]:
    conf = {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": options}
    return {"default": dict(conf), "other": dict(conf)}


def test_a_value_planted_in_redis_without_the_key_is_a_miss_and_an_error(
    redis_url: str,
) -> None:
    cache = caches["default"]
    cache.set("user:1", {"name": "alice"})
    raw = redis.Redis.from_url(redis_url)
    [stored] = raw.keys("dj:*user:1")
    # An attacker who can write to Redis but lacks the signing key plants a pickle.
    forged = b"$" + b"\0" * 32 + pickle.dumps({"name": "mallory"})
    raw.set(stored, forged)
    assert cache.l1 is not None
    cache.l1.clear()
    assert cache.get("user:1", "default") == "default"
    assert cache.metrics.get_stats("user")["errors"] == 1
    raw.close()


def test_ints_stay_raw_digits_in_redis_so_incr_is_atomic(redis_url: str) -> None:
    cache = caches["default"]
    cache.set("counter:a", 41)
    raw = redis.Redis.from_url(redis_url)
    [stored] = raw.keys("dj:*counter:a")
    assert raw.get(stored) == b"41"
    assert cache.incr("counter:a") == 42
    raw.close()


class Name(str):
    """A str subclass: it must come back as itself, so it is pickled."""


@pytest.mark.parametrize("value", ["héllo", "", "\ud800 lone surrogate", Name("alice")])
def test_strings_come_back_exactly_from_redis(value: str) -> None:
    cache = caches["default"]
    cache.set("text:1", value, 300)
    assert cache.l1 is not None
    cache.l1.clear()  # as another process would, read it from Redis
    found = cache.get("text:1")
    assert (found, type(found)) == (value, type(value))


def test_a_str_is_stored_as_marked_utf8_with_its_expiry_not_as_a_pickle(redis_url: str) -> None:
    cache = caches["default"]
    cache.set("text:2", "héllo", None)
    raw = redis.Redis.from_url(redis_url)
    [stored] = raw.keys("dj:*text:2")
    assert raw.get(stored) == b"@0000000000000'" + "héllo".encode()
    # Text that is not UTF-8 is corrupt: a miss and an error, never a crash.
    raw.set(stored, b"@0000000000000'\xff\xfe")
    assert cache.l1 is not None
    cache.l1.clear()
    assert cache.get("text:2", "gone") == "gone"
    assert cache.metrics.get_stats("text")["errors"] == 1
    raw.close()


def test_mutating_a_returned_value_does_not_change_the_cached_one() -> None:
    cache = caches["default"]
    cache.set("user:2", {"roles": ["reader"]})
    first = cache.get("user:2")
    first["roles"].append("admin")
    assert cache.get("user:2") == {"roles": ["reader"]}


def test_mutating_a_flat_value_before_or_after_does_not_change_the_cached_one() -> None:
    # A dict or list of immutable items is held as an object, copied per read.
    cache = caches["default"]
    record, tags = {"id": 2, "name": "Ada"}, ["a", "b"]
    cache.set("user:3", record)
    cache.set("user:4", tags)
    record["name"] = "changed after set"
    tags.append("c")
    first, listed = cache.get("user:3"), cache.get("user:4")
    first["name"] = "changed after get"
    first["extra"] = True
    listed.clear()
    assert cache.get("user:3") == {"id": 2, "name": "Ada"}
    assert cache.get("user:4") == ["a", "b"]


def test_a_write_through_one_alias_is_seen_at_once_through_another(
    settings: Any, redis_url: str
) -> None:
    settings.CACHES = two_aliases(redis_url)
    one, other = caches["default"], caches["other"]
    one.set("provider:1", "old")
    assert other.get("provider:1") == "old"  # now held in other's L1 too
    one.set("provider:1", "new")
    assert other.get("provider:1") == "new"
    one.delete("provider:1")
    assert other.get("provider:1") is None


def test_two_aliases_on_one_redis_keep_their_own_settings(settings: Any, redis_url: str) -> None:
    # Issue 11, item 3: shared process state once merged them, first alias wins.
    settings.CACHES = {
        "quiet": {"BACKEND": BACKEND, "LOCATION": redis_url, "OPTIONS": {"INVALIDATION": False}},
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": redis_url,
            "OPTIONS": {"BREAKER_THRESHOLD": 99},
        },
    }
    quiet, default = caches["quiet"], caches["default"]
    quiet.set("user:1", "q")  # built first, with invalidation off
    default.set("user:2", "old")
    assert default.breaker is not None
    assert quiet.breaker is not None
    assert (default.breaker.failure_threshold, quiet.breaker.failure_threshold) == (99, 3)
    assert default.metrics is not quiet.metrics
    assert default.get("user:2") == "old"  # held in L1 now
    raw = redis.Redis.from_url(redis_url)
    try:
        [stored] = raw.keys("*user:2")
        raw.delete(stored)  # another process's write
        deadline = time.monotonic() + 5
        while default.get("user:2") is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert default.get("user:2") is None, "the alias with invalidation heard nothing"
    finally:
        raw.close()


def test_instances_of_one_alias_in_several_threads_share_one_l1() -> None:
    import threading

    seen: list[object] = []
    caches["default"].set("accounts:1", "x")
    thread = threading.Thread(target=lambda: seen.append(caches["default"].l1))
    thread.start()
    thread.join()
    assert seen == [caches["default"].l1]


def test_unknown_options_are_an_error_that_names_the_key(settings: Any, redis_url: str) -> None:
    settings.CACHES = {
        "default": {"BACKEND": BACKEND, "LOCATION": redis_url, "OPTIONS": {"L1_SIZE": 5}}
    }
    with pytest.raises(ImproperlyConfigured, match="L1_SIZE"):
        caches["default"].get("x")


def test_no_password_appears_in_the_configuration_summary(settings: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": BACKEND, "LOCATION": "redis://:s3cret@127.0.0.1:1/0"}}
    summary = repr(caches["default"].describe())
    assert "s3cret" not in summary
    assert "***" in summary


async def test_the_async_methods_are_native_and_share_state_with_the_sync_ones(
    close_loop_clients: None,
) -> None:
    cache = caches["default"]
    await cache.aset("user:9", {"a": 1}, 30)
    assert cache.get("user:9") == {"a": 1}
    assert await cache.aget_many(["user:9", "user:10"]) == {"user:9": {"a": 1}}
    assert await cache.aadd("user:9", 2) is False
    assert await cache.aadd("counter:x", 1) is True
    assert await cache.aincr("counter:x") == 2
    assert await cache.adelete("user:9") is True
    # Django's default a* methods run the sync ones in a thread; ours are coroutines of
    # our own class.
    assert type(cache).aget is not type(cache).__mro__[1].aget


def test_with_redis_down_reads_miss_and_writes_fail_quietly_without_long_waits(
    use_caches: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer() as server:
        use_caches(server.url)
        cache = caches["default"]
        cache.set("user:1", "cached")
        server.kill()
        caplog.set_level(logging.WARNING, logger="django_tiercache")
        for index in range(200):
            assert cache.get(f"user:cold{index}", "fallback") == "fallback"
            cache.set(f"user:new{index}", "x")  # must not raise
        assert cache.get("user:1") == "cached"  # the L1 copy still serves
        assert cache.add("user:2", "x") is False
        assert cache.set_many({"user:3": 1}) == ["user:3"]
        assert cache.get_many(["user:4"]) == {}
        assert cache.delete("user:1") is False
        assert cache.has_key("user:5") is False
        with pytest.raises(ValueError, match="not found"):
            cache.incr("user:6")
        # After the first few failures the breaker answers without trying the network.
        assert cache.breaker is not None
        assert cache.breaker.times_opened >= 1
        assert cache.breaker.state == "open"
        failure_lines = [r for r in caplog.records if "failed" in r.getMessage()]
        assert 1 <= len(failure_lines) <= 6  # logged, but not once per call
        server.restart()
    registry.reset()


# -- add with a timeout that expires at once (issue 11 item 8) --------------------------


@pytest.mark.parametrize("timeout", [0, -1])
def test_add_with_an_expired_timeout_keeps_the_value_a_key_already_has(timeout: int) -> None:
    cache = caches["default"]
    cache.set("user:1", "kept")
    assert cache.add("user:1", "other", timeout) is False
    assert cache.get("user:1") == "kept"
    assert cache.l1 is not None
    cache.l1.clear()  # and Redis kept it too
    assert cache.get("user:1") == "kept"


@pytest.mark.parametrize("timeout", [0, -1])
async def test_aadd_with_an_expired_timeout_keeps_the_value_a_key_already_has(
    timeout: int, close_loop_clients: None
) -> None:
    cache = caches["default"]
    await cache.aset("user:1", "kept")
    assert await cache.aadd("user:1", "other", timeout) is False
    assert cache.l1 is not None
    cache.l1.clear()
    assert await cache.aget("user:1") == "kept"


def test_add_under_a_default_timeout_of_zero_keeps_an_existing_value(
    settings: Any, redis_url: str
) -> None:
    settings.CACHES = {"default": {"BACKEND": BACKEND, "LOCATION": redis_url, "TIMEOUT": 0}}
    cache = caches["default"]
    cache.set("user:1", "kept", None)
    assert cache.add("user:1", "other") is False
    assert cache.get("user:1") == "kept"
    # On a free key, add reports success and, as its timeout says, keeps nothing.
    assert cache.add("user:2", "gone") is True
    assert cache.get("user:2", "missing") == "missing"


# -- signatures bound to the key (issue 11 item 11) -------------------------------------


def _copy_in_redis(redis_url: str, source: str, target: str) -> None:
    with redis.Redis.from_url(redis_url) as raw:
        [source_key] = raw.keys(source)
        [target_key] = raw.keys(target)
        raw.set(target_key, raw.get(source_key))


def test_a_signed_value_copied_to_another_key_is_a_miss_and_an_error(redis_url: str) -> None:
    cache = caches["default"]
    cache.set("perms:alice", {"is_admin": True})
    cache.set("perms:mallory", {"is_admin": False})
    # Someone who can write to Redis, but has no signing key, copies alice's value.
    _copy_in_redis(redis_url, "dj:*perms:alice", "dj:*perms:mallory")
    assert cache.l1 is not None
    cache.l1.clear()
    assert cache.get("perms:mallory", "refused") == "refused"
    assert cache.metrics.get_stats("perms")["errors"] == 1
    assert cache.get("perms:alice") == {"is_admin": True}


def test_the_signature_covers_the_key_prefix_and_version(settings: Any, redis_url: str) -> None:
    settings.CACHES = {
        "default": {"BACKEND": BACKEND, "LOCATION": redis_url, "KEY_PREFIX": "site-a"},
        "other": {"BACKEND": BACKEND, "LOCATION": redis_url, "KEY_PREFIX": "site-b"},
    }
    one, other = caches["default"], caches["other"]
    one.set("perms:1", ["admin"])
    one.set("perms:1", ["reader"], version=2)
    other.set("perms:1", ["reader"])
    _copy_in_redis(redis_url, "dj:site-a:1:perms:1", "dj:site-b:1:perms:1")
    _copy_in_redis(redis_url, "dj:site-a:1:perms:1", "dj:site-a:2:perms:1")
    for cache in (one, other):
        assert cache.l1 is not None
        cache.l1.clear()
    assert other.get("perms:1", "refused") == "refused"
    assert one.get("perms:1", "refused", version=2) == "refused"
    assert one.get("perms:1") == ["admin"]


def test_values_signed_with_a_fallback_secret_key_still_read_during_a_rotation(
    settings: Any, redis_url: str
) -> None:
    settings.SECRET_KEY = "old-secret"
    settings.CACHES = tiered_caches(redis_url)
    caches["default"].set("user:1", {"name": "old"})

    settings.SECRET_KEY = "new-secret"
    settings.SECRET_KEY_FALLBACKS = ["old-secret"]
    settings.CACHES = tiered_caches(redis_url)  # a new process, as after a deploy
    rotating = caches["default"]
    assert rotating.l1 is not None
    rotating.l1.clear()
    assert rotating.get("user:1") == {"name": "old"}
    rotating.set("user:2", {"name": "new"})

    # New writes are signed with the new key: they read once the old one is dropped...
    settings.SECRET_KEY_FALLBACKS = []
    settings.CACHES = tiered_caches(redis_url)
    rotated = caches["default"]
    assert rotated.l1 is not None
    rotated.l1.clear()
    assert rotated.get("user:2") == {"name": "new"}
    # ...and values signed with the dropped key do not.
    assert rotated.get("user:1", "refused") == "refused"


class WideMacSerializer(SignedPickleSerializer):
    """A serializer whose signed pickles carry 16 more bytes before the pickle."""

    _PAD = b"\0" * 16

    def dumps(self, key: str, value: object) -> bytes:
        raw = super().dumps(key, value)
        return raw[:1] + self._PAD + raw[1:] if raw[:1] == b"$" else raw

    def loads(self, key: str, raw: bytes) -> object:
        if raw[:1] == b"$":
            raw = raw[:1] + raw[1 + len(self._PAD) :]
        return super().loads(key, raw)

    def pickle_start(self, raw: bytes) -> int | None:
        start = super().pickle_start(raw)
        return None if start is None else start + len(self._PAD)


def test_l1_copies_start_where_the_serializer_says_its_pickle_starts(
    use_caches: Callable[..., None], redis_url: str
) -> None:
    use_caches(redis_url, SERIALIZER=f"{__name__}.WideMacSerializer")
    cache = caches["default"]
    cache.set("user:1", {"roles": ["reader"]})
    assert cache.get("user:1") == {"roles": ["reader"]}  # from L1
    assert cache.l1 is not None
    cache.l1.clear()
    assert cache.get("user:1") == {"roles": ["reader"]}  # from Redis, then L1
    assert cache.get("user:1") == {"roles": ["reader"]}

"""django-redis's extended API on `TieredCache`, as code written for django-redis calls it.

Every write must leave no stale L1 copy: the `other` alias (same Redis, its own L1, as
another process would have) reads a key into its L1 first, then `default` changes it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from redis.lock import Lock

from tests.django_tiercache.django_setup import tiered_caches
from tests.redis_server import RedisServer

BACKEND = "django_tiercache.backend.TieredCache"


@pytest.fixture
def two_caches(settings: Any, redis_url: str) -> tuple[Any, Any]:
    """Return `default` and `other`: one Redis, two L1s (as two processes have)."""
    conf = tiered_caches(redis_url)["default"]
    settings.CACHES = {"default": conf, "other": {**conf, "OPTIONS": {**conf["OPTIONS"]}}}
    return caches["default"], caches["other"]


def _held_in_l1(cache: Any, key: str) -> bool:
    return cache.l1.entry(f"dj:{cache.make_and_validate_key(key)}") is not None


def test_ttl_is_none_without_expiry_zero_when_absent_and_whole_seconds_otherwise() -> None:
    cache = caches["default"]
    cache.set("a", 1, timeout=10)
    cache.set("forever", 1, timeout=None)

    assert cache.ttl("a") == 10
    assert 9_000 < cache.pttl("a") <= 10_000
    assert cache.ttl("forever") is None
    assert cache.pttl("forever") is None
    assert cache.ttl("absent") == 0
    assert cache.pttl("absent") == 0


def test_expire_pexpire_and_persist_change_the_ttl_and_report_a_missing_key() -> None:
    cache = caches["default"]
    cache.set("a", 1, timeout=None)

    assert cache.expire("a", 20) is True
    assert cache.ttl("a") == 20
    assert cache.pexpire("a", 20_500) is True
    assert 20_000 < cache.pttl("a") <= 20_500
    assert cache.expire("a", DEFAULT_TIMEOUT) is True
    assert cache.ttl("a") == cache.default_timeout
    assert cache.pexpire("a", DEFAULT_TIMEOUT) is True  # the TIMEOUT, in seconds still
    assert cache.ttl("a") == cache.default_timeout
    assert cache.expire("a", datetime.timedelta(minutes=1)) is True
    assert cache.ttl("a") == 60
    with pytest.raises(TypeError, match="key 'a' must be a number or a timedelta"):
        cache.expire("a", "soon")
    assert cache.persist("a") is True
    assert cache.ttl("a") is None
    assert cache.persist("a") is False  # no expiry left to remove, as Redis says
    for change in (cache.expire, cache.pexpire):
        assert change("absent", 20) is False
    assert cache.persist("absent") is False


def test_expire_at_takes_a_datetime_or_a_unix_time_and_the_past_deletes() -> None:
    cache = caches["default"]
    cache.set("a", 1, timeout=None)
    in_an_hour = datetime.datetime.now() + datetime.timedelta(hours=1)

    assert cache.expire_at("a", in_an_hour) is True
    assert 3590 <= cache.ttl("a") <= 3600
    assert cache.pexpire_at("a", int(in_an_hour.timestamp() * 1000) + 3_600_000) is True
    assert 7_190_000 <= cache.pttl("a") <= 7_200_000
    assert cache.expire_at("a", int(in_an_hour.timestamp()) - 7200) is True
    assert cache.get("a") is None
    assert cache.expire_at("a", in_an_hour) is False
    with pytest.raises(TypeError, match="key 'a' must be a datetime or a number"):
        cache.pexpire_at("a", "tomorrow")


def test_no_write_of_the_extended_api_leaves_a_stale_l1_copy(two_caches: tuple[Any, Any]) -> None:
    default, other = two_caches
    changes: list[tuple[object, Callable[[str], object], object]] = [
        ("old", lambda key: default.set(key, "new", xx=True), "new"),
        ("old", lambda key: default.expire(key, 0), None),
        ("old", lambda key: default.pexpire_at(key, datetime.datetime(2000, 1, 1)), None),
        ("old", default.delete_pattern, None),
        (7, lambda key: default.incr(key, 1, ignore_key_check=True), 8),
        (2**63 - 1, default.incr, 2**63),
    ]
    for number, (initial, change, expected) in enumerate(changes):
        key = f"k{number}"
        default.set(key, initial, timeout=None)
        assert other.get(key) == initial
        assert _held_in_l1(other, key)
        change(key)
        assert other.get(key) == expected, number


def test_expire_and_persist_reach_other_l1s(two_caches: tuple[Any, Any]) -> None:
    default, other = two_caches
    default.set("a", "v", timeout=None)
    other.get("a")
    default.expire("a", 5)
    assert not _held_in_l1(other, "a")  # refilled with the new TTL on the next read
    assert other.get("a") == "v"
    assert other.l1.entry(f"dj:{other.make_and_validate_key('a')}")["ttl"] <= 5


def test_set_with_nx_and_xx_returns_whether_it_stored() -> None:
    cache = caches["default"]

    assert cache.set("a", 1, xx=True) is False
    assert cache.get("a") is None
    assert cache.set("a", 1, nx=True) is True
    assert cache.set("a", 2, nx=True) is False
    assert cache.get("a") == 1
    assert cache.set("a", 3, xx=True) is True
    assert cache.get("a") == 3
    assert cache.set("b", 4) is True
    with pytest.raises(ValueError, match="key 'b': nx and xx exclude each other"):
        cache.set("b", 5, nx=True, xx=True)


def test_set_nx_with_a_negative_timeout_keeps_an_existing_value() -> None:
    cache = caches["default"]
    cache.set("a", 222, timeout=None)

    assert cache.set("a", 333, timeout=-1, nx=True) is False
    assert cache.get("a") == 222
    assert cache.set("a", 333, timeout=-1, xx=True) is True  # stored, and expired at once
    assert cache.get("a") is None


def test_incr_with_ignore_key_check_starts_a_missing_key_at_zero() -> None:
    cache = caches["default"]

    assert cache.incr("n", 10, ignore_key_check=True) == 10
    assert cache.incr("n", ignore_key_check=True) == 11
    with pytest.raises(ValueError, match="'m' not found"):
        cache.incr("m")


def test_incr_past_64_bits_adds_in_python_and_keeps_the_ttl() -> None:
    cache = caches["default"]
    cache.set("n", 2**63 - 1, timeout=100)

    assert cache.incr("n") == 2**63
    assert cache.incr("n", 2) == 2**63 + 2
    assert cache.decr("n", 3) == 2**63 - 1
    assert cache.get("n") == 2**63 - 1
    assert 95 <= cache.ttl("n") <= 100
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")


def test_delete_pattern_counts_and_keeps_other_prefixes_and_versions(settings: Any) -> None:
    caches_setting = tiered_caches(settings.CACHES["default"]["LOCATION"])
    conf = caches_setting["default"]
    settings.CACHES = {"default": conf, "star": {**conf, "KEY_PREFIX": "*"}}
    cache, star = caches["default"], caches["star"]
    for key in ("foo-aa", "foo-ab", "foo-bb"):
        cache.set(key, 1)
    cache.set("foo-ac", 1, version=2)
    star.set("foo-ad", 1)

    assert cache.delete_pattern("foo-a*") == 2
    assert cache.keys("foo*") == ["foo-bb"]
    assert cache.keys("foo*", version=2) == ["foo-ac"]
    assert star.keys("*") == ["foo-ad"]  # its prefix is a glob character, escaped
    assert star.delete_pattern("*") == 1
    assert cache.delete_pattern("foo-a*") == 0


def test_keys_and_iter_keys_scan_in_batches_and_never_send_keys(redis_url: str) -> None:
    cache = caches["default"]
    cache.set_many({f"user:{n}": n for n in range(50)})
    cache.set("other", 1)
    raw = redis.Redis.from_url(redis_url)
    raw.config_resetstat()

    found = list(cache.iter_keys("user:*", itersize=7))

    assert sorted(found) == sorted(f"user:{n}" for n in range(50))
    assert sorted(cache.keys("user:*")) == sorted(found)
    stats = raw.info("commandstats")
    assert "cmdstat_keys" not in stats
    assert stats["cmdstat_scan"]["calls"] > 2  # batches of about 7
    raw.close()


def test_lock_is_a_redis_py_lock_on_the_cache_key(redis_url: str) -> None:
    cache = caches["default"]
    lock = cache.lock("job", timeout=5)
    other = cache.lock("job", blocking=False)

    assert isinstance(lock, Lock)
    assert lock.acquire() is True
    assert other.acquire() is False
    assert cache.has_key("job")
    raw = redis.Redis.from_url(redis_url)
    assert raw.exists("dj:" + cache.make_and_validate_key("job")) == 1
    assert 0 < raw.pttl("dj:" + cache.make_and_validate_key("job")) <= 5000
    lock.release()
    assert not cache.has_key("job")
    raw.close()


def test_get_client_is_the_raw_client_and_django_redis_finds_it() -> None:
    from django_redis import get_redis_connection

    cache = caches["default"]
    client = cache.get_client()

    assert isinstance(client, redis.Redis)
    assert client.ping() is True
    assert get_redis_connection("default") is client
    assert cache.client.get_client(write=False) is client
    cache.close()  # keeps the pool: Django calls it after every request
    assert client.ping() is True


async def test_the_async_twins(close_loop_clients: None, redis_url: str) -> None:
    cache = caches["default"]
    await cache.aset("a", 1, timeout=10)

    assert await cache.aset("a", 2, nx=True) is False
    assert await cache.attl("a") == 10
    assert 9000 < await cache.apttl("a") <= 10_000
    assert await cache.aexpire("a", 20) is True
    assert await cache.attl("a") == 20
    assert await cache.apexpire("a", 30_000) is True
    assert await cache.apersist("a") is True
    assert await cache.attl("a") is None
    in_an_hour = datetime.datetime.now() + datetime.timedelta(hours=1)
    assert await cache.aexpire_at("a", in_an_hour) is True
    assert await cache.apexpire_at("a", in_an_hour) is True
    assert await cache.aincr("n", 5, ignore_key_check=True) == 5
    assert sorted(await cache.akeys("*")) == ["a", "n"]
    assert sorted([key async for key in cache.aiter_keys("*", itersize=1)]) == ["a", "n"]
    assert await cache.adelete_pattern("*") == 2
    lock = await cache.alock("job", timeout=5)
    assert await lock.acquire() is True
    assert await cache.ahas_key("job")
    await lock.release()
    client = await cache.aget_client()
    assert await client.ping() is True


def test_an_l1_only_cache_answers_from_l1(settings: Any) -> None:
    settings.CACHES = tiered_caches("")
    cache = caches["default"]
    cache.set("a", 1, timeout=30)
    cache.set("b", 1, timeout=None)

    assert sorted(cache.keys("*")) == ["a", "b"]
    assert 29 <= cache.ttl("a") <= 30
    assert cache.ttl("b") == 60  # without Redis, L1_TTL bounds every entry
    assert cache.delete_pattern("a*") == 1
    with pytest.raises(NotImplementedError, match="L1 only"):
        cache.get_client()


def test_every_extended_call_fails_open_when_redis_is_down(settings: Any) -> None:
    with RedisServer() as server:
        settings.CACHES = tiered_caches(server.url)
        cache = caches["default"]
        cache.set("a", 1, timeout=None)
        server.kill()

        assert cache.ttl("a") == 0
        assert cache.pttl("a") == 0
        assert cache.expire("a", 5) is False
        assert cache.persist("a") is False
        assert cache.set("a", 2, nx=True) is False
        assert cache.delete_pattern("*") == 0
        assert cache.keys("*") == []
        assert list(cache.iter_keys("*")) == []


def test_log_ignored_exceptions_logs_every_failure(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CACHES = tiered_caches("redis://127.0.0.1:1/0", LOG_IGNORED_EXCEPTIONS=True)
    cache = caches["default"]
    with caplog.at_level(logging.ERROR, logger="django_tiercache"):
        for _ in range(3):
            assert cache.get("a") is None

    assert [record.getMessage() for record in caplog.records] == ["Exception ignored"] * 3


def test_extended_writes_reach_the_l1_of_another_process(redis_url: str) -> None:
    env = {**os.environ, "TIERCACHE_TEST_REDIS_URL": redis_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("extended_worker.py"))],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = worker.stdin, worker.stdout
    assert stdin is not None
    assert stdout is not None

    def ask(line: str) -> Any:
        stdin.write(line + "\n")
        stdin.flush()
        return json.loads(stdout.readline())

    cache = caches["default"]
    changes: list[tuple[str, Callable[[str], object], object]] = [
        ("old", lambda key: cache.set(key, "new", xx=True), "new"),
        ("old", lambda key: cache.expire(key, 0), None),
        ("old", cache.persist, "old"),
        ("old", lambda key: cache.expire_at(key, datetime.datetime(2000, 1, 1)), None),
        ("old", cache.delete_pattern, None),
        (7, lambda key: cache.incr(key, 1, ignore_key_check=True), 8),
    ]
    try:
        assert json.loads(stdout.readline()) == {"ready": True}
        for number, (initial, change, expected) in enumerate(changes):
            key = f"x{number}"
            cache.set(key, initial, timeout=100)
            assert ask(f"hold {key}") == {"value": initial, "held": True}
            change(key)
            assert ask(f"await {key} {json.dumps(expected)}") == {"value": expected}, number
    finally:
        stdin.close()
        worker.wait(timeout=30)
        stdout.close()

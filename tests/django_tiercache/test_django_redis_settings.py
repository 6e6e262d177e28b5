"""A CACHES entry copied from django-redis works: its OPTIONS are translated or named."""

from __future__ import annotations

import datetime
import importlib.util
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.checks import run_checks
from django.test import override_settings

from django_tiercache.compat import translate
from django_tiercache.options import OPTION_DEFAULTS, parse_options
from tests.redis_server import RedisServer

BACKEND = "django_tiercache.backend.TieredCache"
DJANGO_REDIS_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "SOCKET_CONNECT_TIMEOUT": 0.2,
    "SOCKET_TIMEOUT": 0.3,
    "CONNECTION_POOL_KWARGS": {"max_connections": 50, "retry_on_timeout": True},
    "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
    "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor",
    "IGNORE_EXCEPTIONS": True,
    "LOG_IGNORED_EXCEPTIONS": True,
}


def _entry(location: object, options: dict[str, Any]) -> dict[str, Any]:
    return {"default": {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": options}}


def _checks(location: object, options: dict[str, Any]) -> list[tuple[str, str]]:
    with override_settings(CACHES=_entry(location, options)):
        messages = run_checks(tags=["django_tiercache"])
    return [(str(message.id), message.msg) for message in messages]


def test_django_redis_options_become_ours(redis_url: str) -> None:
    parsed = parse_options("default", [redis_url, redis_url], DJANGO_REDIS_OPTIONS)

    assert parsed.core.url == redis_url
    assert parsed.core.connect_timeout == 0.2
    assert parsed.core.socket_timeout == 0.3
    assert parsed.core.max_connections == 50
    assert parsed.SERIALIZER == "django_tiercache.serializers.JSONSerializer"
    assert parsed.COMPRESSOR == "zlib"
    assert parsed.LOG_IGNORED_EXCEPTIONS is True


def test_a_copied_settings_file_works_and_the_checks_say_what_is_ignored(
    settings: Any, redis_url: str
) -> None:
    settings.CACHES = _entry(redis_url, DJANGO_REDIS_OPTIONS)
    cache = caches["default"]
    cache.set("doc", {"words": ["hello"] * 200})

    assert cache.get("doc") == {"words": ["hello"] * 200}
    raw = redis.Redis.from_url(redis_url)
    [stored] = [raw.get(key) for key in raw.keys("dj:*doc")]
    assert b"~z" in stored[:20]  # compressed, flagged with its algorithm
    raw.close()
    found = _checks(redis_url, DJANGO_REDIS_OPTIONS)
    assert [id_ for id_, _ in found] == ["django_tiercache.I010"] * 2
    assert any("IGNORE_EXCEPTIONS" in msg and "fails open" in msg for _, msg in found)


def test_what_cannot_work_is_a_check_error_naming_the_option_not_a_crash(
    settings: Any, redis_url: str
) -> None:
    options = {"CLIENT_CLASS": "django_redis.client.ShardClient", "REDIS_CLIENT_CLASS": "x.Y"}
    settings.CACHES = _entry(redis_url, options)
    caches["default"].set("a", 1)  # the site still starts; `manage.py check` refuses

    found = _checks(redis_url, options)
    assert [id_ for id_, _ in found] == ["django_tiercache.E010"] * 2
    assert "ShardClient" in found[0][1]
    assert "REDIS_CLIENT_CLASS" in found[1][1]


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"SERIALIZER": "django_redis.serializers.msgpack.MSGPackSerializer"}, "SERIALIZER"),
        ({"COMPRESSOR": "brotli"}, "COMPRESSOR"),
        ({"CONNECTION_POOL_KWARGS": {"ssl_cert_reqs": None}}, "ssl_cert_reqs"),
    ],
)
def test_unsupported_choices_are_named(options: dict[str, Any], option: str) -> None:
    findings = translate("redis://h/0", options, OPTION_DEFAULTS).findings

    assert [finding.level for finding in findings] == ["error"]
    assert option in findings[0].message


def test_a_location_list_uses_its_first_url_and_says_so(redis_url: str) -> None:
    replica = redis_url.replace("/0", "/1")

    assert _checks([redis_url, redis_url], {}) == []
    assert [id_ for id_, _ in _checks(f"{redis_url},{replica}", {})] == ["django_tiercache.I010"]


def test_the_password_option_reaches_redis_and_no_page(settings: Any) -> None:
    with RedisServer("--requirepass", "s3cret") as server:
        settings.CACHES = _entry(server.url, {"PASSWORD": "s3cret"})
        cache = caches["default"]
        cache.set("a", 1)

        assert cache.get_client().get(f"dj:{cache.make_and_validate_key('a')}") == b"1"
        assert "s3cret" not in repr(cache.describe())
        assert "s3cret" not in repr(cache.options)


@pytest.mark.parametrize(
    "algorithm",
    [
        "zlib",
        "gzip",
        "lzma",
        pytest.param(
            "lz4",
            marks=pytest.mark.skipif(not importlib.util.find_spec("lz4"), reason="no lz4"),
        ),
        pytest.param(
            "zstd",
            marks=pytest.mark.skipif(not importlib.util.find_spec("pyzstd"), reason="no pyzstd"),
        ),
    ],
)
def test_compressed_values_read_back_under_any_compressor_and_ints_stay_raw(
    settings: Any, redis_url: str, algorithm: str
) -> None:
    big = {"text": "x" * 5000}
    settings.CACHES = _entry(redis_url, {"COMPRESSOR": algorithm, "L1_MAXSIZE": 0})
    writer = caches["default"]
    writer.set("big", big)
    writer.set("small", {"a": 1})
    writer.set("n", 10**15)
    raw = redis.Redis.from_url(redis_url)
    stored = {key.decode().rpartition(":")[2]: raw.get(key) for key in raw.keys("dj:*")}
    raw.close()

    assert len(stored["big"]) < 1000
    assert b"~" not in stored["small"][:15]  # under COMPRESS_MIN_BYTES
    assert stored["n"] == b"1000000000000000"
    assert writer.incr("n") == 10**15 + 1
    other = "gzip" if algorithm == "zlib" else "zlib"
    settings.CACHES = _entry(redis_url, {"COMPRESSOR": other, "L1_MAXSIZE": 0})
    assert caches["default"].get("big") == big  # the value names its algorithm


def test_a_corrupt_compressed_value_is_a_miss(settings: Any, redis_url: str) -> None:
    settings.CACHES = _entry(redis_url, {"COMPRESSOR": "zlib", "L1_MAXSIZE": 0})
    cache = caches["default"]
    cache.set("big", "y" * 5000)
    raw = redis.Redis.from_url(redis_url)
    [key] = raw.keys("dj:*big")
    raw.set(key, raw.get(key)[:-10])  # type: ignore[index]
    raw.close()

    assert cache.get("big", "miss") == "miss"
    assert cache.metrics.get_stats("default")["errors"] == 1


def test_json_values_read_the_same_in_the_writing_process_as_in_others(
    settings: Any, redis_url: str
) -> None:
    json_path = "django_redis.serializers.json.JSONSerializer"
    conf = _entry(redis_url, {"SERIALIZER": json_path})["default"]
    settings.CACHES = {"default": conf, "other": {**conf, "OPTIONS": {"SERIALIZER": json_path}}}
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    caches["default"].set("event", {"at": when, "tags": ("a", "b")})

    expected = {"at": "2026-01-02T03:04:05", "tags": ["a", "b"]}
    assert caches["default"].get("event") == expected  # from this process's L1
    assert caches["other"].get("event") == expected  # from Redis
    caches["default"].set("when", when)
    assert caches["default"].get("when") == "2026-01-02T03:04:05"

"""Errors and log lines of the Django backend name the caller's key and the real cause."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import caches


def assert_names_only_the_callers_key(text: str, key: str) -> None:
    assert repr(key) in text, text
    assert f":1:{key}" not in text, text  # Django's made key, or Redis's prefixed one


def test_incr_of_a_value_that_is_not_an_integer_names_the_callers_key() -> None:
    cache = caches["default"]
    cache.set("hits", "many")
    with pytest.raises(TypeError) as raised:
        cache.incr("hits")
    assert_names_only_the_callers_key(str(raised.value), "hits")
    assert "not an integer" in str(raised.value)


def test_incr_past_the_64_bit_range_goes_on_in_python_as_django_redis_does() -> None:
    # Redis refuses (overflow); django-redis then reads, adds and writes, and code
    # migrated from it counts on that (issue 13; see docs/migrating-from-django-redis.md).
    cache = caches["default"]
    cache.set("hits", 2**63 - 1)
    assert cache.incr("hits") == 2**63
    assert cache.get("hits") == 2**63


def test_an_unpicklable_value_names_the_callers_key() -> None:
    with pytest.raises(pickle.PicklingError) as raised:
        caches["default"].set("user:1", lambda: None)
    assert_names_only_the_callers_key(str(raised.value), "user:1")


@pytest.mark.parametrize(
    "store",
    [
        lambda cache: cache.set("big", "x" * 2000),
        lambda cache: cache.set_many({"small": "s", "big": "x" * 2000}),
    ],
    ids=["set", "set_many"],
)
def test_an_oversized_value_is_logged_as_the_values_fault_not_redis(
    use_caches: Callable[..., None],
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    store: Callable[[Any], object],
) -> None:
    use_caches(redis_url, MAX_VALUE_BYTES=1000)
    with caplog.at_level(logging.WARNING, logger="django_tiercache"):
        store(caches["default"])
    [record] = [r for r in caplog.records if r.name == "django_tiercache"]
    message = record.getMessage()
    assert "ValueTooLarge" in message
    assert_names_only_the_callers_key(message, "big")
    assert "without Redis" not in message
    assert caches["default"].get("big") is None

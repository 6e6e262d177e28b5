"""Async views under WSGI: a fresh event loop per request leaves no connection behind."""

from __future__ import annotations

from typing import Any

import redis
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.test import Client

from tests.django_tiercache.django_setup import tiered_caches


def _connections(raw: redis.Redis) -> int:
    return len(raw.client_list())


def test_async_calls_on_fresh_loops_keep_the_connection_count_flat(
    settings: Any, redis_url: str
) -> None:
    settings.CACHES = tiered_caches(redis_url, L1_MAXSIZE=0)
    cache = caches["default"]
    raw = redis.Redis.from_url(redis_url)
    try:
        async_to_sync(cache.aset)("k", "v")
        before = _connections(raw)
        for _ in range(300):  # each call runs on a new event loop, as under WSGI
            assert async_to_sync(cache.aget)("k") == "v"
        assert _connections(raw) <= before + 2  # flat: other threads may come and go
    finally:
        raw.close()


def test_async_view_requests_through_the_sync_handler_keep_the_count_flat(
    settings: Any, redis_url: str
) -> None:
    settings.CACHES = tiered_caches(redis_url, L1_MAXSIZE=0)
    raw = redis.Redis.from_url(redis_url)
    client = Client()  # the WSGI handler: an async view runs on a fresh loop per request
    try:
        assert client.get("/async-user/").status_code == 200
        before = _connections(raw)
        for _ in range(100):
            assert client.get("/async-user/").status_code == 200
        assert _connections(raw) <= before + 2
    finally:
        raw.close()

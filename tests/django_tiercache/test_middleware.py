"""`CacheMetricsMiddleware`: one commit per request, attributed to the view, sync and async."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client

from django_tiercache.metrics import metrics_for
from django_tiercache.middleware import CacheMetricsMiddleware
from django_tiercache.pusher import pusher
from tests.redis_server import RedisServer


def _view_row(view: str, namespace: str) -> dict[str, int]:
    counts = metrics_for("default").snapshot()
    prefix = f"view|{view}|{namespace}|"
    return {name.removeprefix(prefix): n for name, n in counts.items() if name.startswith(prefix)}


def test_sync_request_counts_reach_the_store_only_at_the_end_of_the_request() -> None:
    response = Client().get("/user-and-provider/")

    assert response.status_code == 200
    assert response.json()["during"] == {}, "nothing may reach the process store mid-request"
    stats = metrics_for("default").get_all_stats()
    assert stats["user"]["misses"] == 1
    assert stats["user"]["hits"] == 1
    assert stats["provider"]["misses"] == 1


def test_sync_request_counts_are_attributed_to_the_resolved_view() -> None:
    Client().get("/user-and-provider/")
    Client().get("/user-and-provider/")

    user = _view_row("user-and-provider", "user")
    assert user.get("misses", 0) + user.get("l1_hits", 0) + user.get("l2_hits", 0) == 4
    assert _view_row("user-and-provider", "provider") == {"misses": 2}
    assert metrics_for("default").snapshot()["req|user-and-provider"] == 2


@pytest.mark.usefixtures("close_loop_clients")
async def test_async_request_counts_are_committed_once_and_attributed_to_the_view() -> None:
    response = await AsyncClient().get("/async-user/")

    assert response.status_code == 200
    assert response.json()["during"] == {}
    stats = metrics_for("default").get_all_stats()
    assert stats["user"]["misses"] == 1
    assert stats["user"]["hits"] == 1
    assert stats["accounts"]["misses"] == 1
    assert _view_row("async-user", "accounts") == {"misses": 1}
    assert metrics_for("default").snapshot()["req|async-user"] == 1


@pytest.mark.usefixtures("close_loop_clients")
async def test_concurrent_async_requests_keep_their_counts_apart() -> None:
    client = AsyncClient()
    await asyncio.gather(*(client.get("/async-user/") for _ in range(5)))

    assert metrics_for("default").snapshot()["req|async-user"] == 5
    accounts = metrics_for("default").get_stats("accounts")
    assert accounts["misses"] == 5


def test_a_sync_request_in_async_mode_uses_the_async_path() -> None:
    async def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    def sync_get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert iscoroutinefunction(CacheMetricsMiddleware(get_response))
    assert not iscoroutinefunction(CacheMetricsMiddleware(sync_get_response))
    assert CacheMetricsMiddleware.sync_capable
    assert CacheMetricsMiddleware.async_capable


def test_requests_that_use_no_cache_leave_no_view_rows() -> None:
    Client().get("/no-cache/")

    assert metrics_for("default").snapshot() == {}


def test_cache_use_outside_requests_counts_without_a_view() -> None:
    cache.get("user:404")

    counts = metrics_for("default").snapshot()
    assert {name: n for name, n in counts.items() if not name.startswith("op|")} == {
        "ns|user|misses": 1
    }


def test_unresolved_requests_are_counted_under_a_placeholder_view() -> None:
    def get_response(request: HttpRequest) -> HttpResponse:
        cache.get("user:1")
        return HttpResponse(status=404)

    middleware = CacheMetricsMiddleware(get_response)
    request = HttpRequest()
    middleware(request)

    assert metrics_for("default").snapshot()["req|(unresolved)"] == 1


def test_server_timing_is_off_by_default() -> None:
    response = Client().get("/user-and-provider/")

    assert "Server-Timing" not in response.headers


def test_server_timing_reports_the_requests_hits_and_misses(settings: Any) -> None:
    settings.TIERCACHE = {"SERVER_TIMING": True}

    response = Client().get("/user-and-provider/")

    timing = response.headers["Server-Timing"]
    assert timing.startswith("cache;")
    assert "1 hits" in timing
    assert "2 misses" in timing
    assert 'cache-hits;desc="1"' in timing


@pytest.mark.usefixtures("close_loop_clients")
async def test_server_timing_in_async_mode(settings: Any) -> None:
    settings.TIERCACHE = {"SERVER_TIMING": True}

    response = await AsyncClient().get("/async-user/")

    assert "1 hits" in response.headers["Server-Timing"]


def test_the_pusher_thread_adds_what_requests_counted_into_redis(
    use_caches: Any, redis_url: str
) -> None:
    import redis

    use_caches(redis_url, METRICS_PUSH_INTERVAL=0.01)

    Client().get("/user-and-provider/")

    pushed: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 30
    with redis.Redis.from_url(redis_url) as client:
        while b"req|user-and-provider" not in pushed and time.monotonic() < deadline:
            time.sleep(0.05)
            pushed = client.hgetall("tiercache:metrics:{dj:default}")
    assert pushed[b"req|user-and-provider"] == b"1"
    assert pushed[b"ns|provider|misses"] == b"1"


def test_a_request_is_not_delayed_by_a_push_stuck_on_a_stopped_redis(
    use_caches: Any, private_redis: RedisServer
) -> None:
    # A long socket timeout: a push stuck on the stopped server stays stuck for the test.
    use_caches(
        private_redis.url, METRICS_PUSH_INTERVAL=0.01, SOCKET_TIMEOUT=20.0, INVALIDATION=False
    )
    cache.set("user:1", {"name": "Ada"})  # now in L1 too
    metrics = metrics_for("default")
    os.kill(private_redis.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while pusher().busy_with is not metrics and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pusher().busy_with is metrics, "the pusher never started a push"

        response = Client().get("/l1-user/")

        # The request was served (from L1) while the push was still blocked on Redis.
        assert response.json() == {"user": {"name": "Ada"}}
        assert pusher().busy_with is metrics
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)


@pytest.mark.parametrize("path", ["/user-and-provider/"])
def test_an_exception_in_the_view_still_commits(path: str) -> None:
    def get_response(request: HttpRequest) -> HttpResponse:
        cache.get("user:1")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        CacheMetricsMiddleware(get_response)(HttpRequest())

    assert metrics_for("default").get_stats("user")["misses"] == 1


def test_server_timing_carries_the_time_the_request_waited_for_redis(settings: Any) -> None:
    settings.TIERCACHE = {"SERVER_TIMING": True}

    response = Client().get("/user-and-provider/")  # four Redis round trips

    timing = response.headers["Server-Timing"]
    assert timing.startswith("cache;dur=")
    assert float(timing.split(";")[1].removeprefix("dur=")) > 0


def test_server_timing_sums_the_latencies_the_backend_records(settings: Any) -> None:
    settings.TIERCACHE = {"SERVER_TIMING": True}

    def get_response(request: HttpRequest) -> HttpResponse:
        metrics_for("default").record_latency("l2", "get", 0.0025)
        metrics_for("default").record_latency("l2", "get", 0.0005)
        return HttpResponse()

    response = CacheMetricsMiddleware(get_response)(HttpRequest())

    assert response.headers["Server-Timing"].startswith('cache;dur=3.000;desc="0 hits')

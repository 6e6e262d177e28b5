"""The Redis adapter on redis-py's public API, on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from asgiref.sync import async_to_sync
from returns.result import Result, Success

from tests.redis_server import RedisServer
from tests.tiercache.support import success_of
from tiercache import (
    AsyncTieredCache,
    CacheError,
    CacheUnavailable,
    NotAnInteger,
    TieredCache,
)


def test_flushed_scripts_are_reloaded_and_error_replies_leave_the_connection_in_sync(
    redis_url: str,
) -> None:
    cache = TieredCache.from_url(redis_url, l1_maxsize=0)
    raw = redis.Redis.from_url(redis_url)
    try:
        assert success_of(cache.set("k", "v")) is None
        raw.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
        assert success_of(cache.set("k", "w")) is None
        assert success_of(cache.get("k")) == "w"
        assert isinstance(cache.increment("k").failure(), NotAnInteger)
        assert success_of(cache.increment("n", 2)) == 2  # the connection is still in sync
    finally:
        cache.close()
        raw.close()


# -- connections: bounded, waited for, closed ----------------------------------------


def ordinary_connections(raw: redis.Redis) -> int:
    """Return the clients of the server but `raw` and the cache's own tracking connections."""
    own = raw.client_id()
    return sum(
        1
        for client in raw.client_list()
        if int(client["id"]) != own and not client["name"].startswith("tiercache-")
    )


def test_max_connections_bounds_sixteen_threads_and_waiting_is_not_an_outage(
    redis_url: str,
) -> None:
    # A wait for a free connection is bounded by socket_timeout: generous on a busy machine.
    cache = TieredCache.from_url(redis_url, l1_maxsize=0, max_connections=2, socket_timeout=5)
    raw = redis.Redis.from_url(redis_url)
    results: list[Result[Any, CacheError]] = []
    peak = 0

    def work() -> None:
        for i in range(60):
            results.append(cache.get(f"k{i}"))
            results.append(cache.set(f"k{i}", "v"))

    def watch(stop: threading.Event) -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, ordinary_connections(raw))

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,))
    watcher.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(work) for _ in range(16)]:
                future.result()
    finally:
        stop.set()
        watcher.join()
    try:
        assert [r for r in results if not isinstance(r, Success)] == []
        assert peak <= 2
        assert cache.breaker is not None
        assert cache.breaker.times_opened == 0
    finally:
        cache.close()
        raw.close()


async def test_max_connections_bounds_two_hundred_tasks_without_opening_the_circuit(
    redis_url: str,
) -> None:
    cache = AsyncTieredCache.from_url(
        redis_url, l1_maxsize=0, max_connections=3, socket_timeout=5, connect_timeout=5
    )
    raw = redis.Redis.from_url(redis_url)
    try:
        results = await asyncio.gather(
            *[cache.set(f"k{i}", "v") for i in range(200)],
            *[cache.get(f"k{i}") for i in range(200)],
        )
        assert [r for r in results if not isinstance(r, Success)] == []
        assert ordinary_connections(raw) <= 3
        assert cache.breaker is not None
        assert cache.breaker.times_opened == 0
    finally:
        await cache.aclose()
        raw.close()


def test_close_closes_every_connection_of_the_cache(redis_url: str) -> None:
    cache = TieredCache.from_url(redis_url, l1_maxsize=0)
    raw = redis.Redis.from_url(redis_url)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: cache.set(f"k{i}", "v"), range(400)))
        assert ordinary_connections(raw) >= 1
        cache.close()
        assert ordinary_connections(raw) == 0
    finally:
        raw.close()


def test_fresh_event_loops_leave_no_connection_behind(redis_url: str) -> None:
    cache = AsyncTieredCache.from_url(redis_url, l1_maxsize=0)
    raw = redis.Redis.from_url(redis_url)
    try:
        asyncio.run(cache.set("k", "v"))
        for _ in range(100):
            assert asyncio.run(cache.get("k")) == Success("v")
        for _ in range(100):
            assert async_to_sync(cache.get)("k") == Success("v")
        assert ordinary_connections(raw) <= 1
    finally:
        raw.close()


class _ReplyDropper:
    """A TCP proxy to Redis that forwards requests and cuts the connection before a reply.

    It plays a network that fails after the server has applied a command.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.cut.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_write_whose_reply_is_lost_is_not_sent_again(redis_server: RedisServer) -> None:
    proxy = _ReplyDropper(redis_server.port)
    cache = TieredCache.from_url(f"redis://127.0.0.1:{proxy.port}/0", l1_maxsize=0)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.delete("tc:n")
        assert success_of(cache.increment("n", 5)) == 5
        proxy.cut.set()  # the next command reaches Redis; its reply never comes back
        assert isinstance(cache.increment("n", 5).failure(), CacheUnavailable)
        assert raw.get("tc:n") == b"10"  # applied once, not twice
    finally:
        cache.close()
        proxy.close()
        raw.close()


def test_caches_with_other_breaker_settings_get_their_own_breaker(redis_url: str) -> None:
    first = TieredCache.from_url(redis_url, l1_maxsize=0)
    second = TieredCache.from_url(redis_url, l1_maxsize=0, breaker_threshold=99)
    same = TieredCache.from_url(redis_url, l1_maxsize=0)
    try:
        assert second.breaker is not None
        assert second.breaker.failure_threshold == 99
        assert first.breaker is same.breaker
        assert first.breaker is not second.breaker
    finally:
        for cache in (first, second, same):
            cache.close()

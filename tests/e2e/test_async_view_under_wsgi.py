"""Async views under gunicorn sync workers keep Redis connections and fds flat (issue 11, 14).

Django runs an async view under WSGI on a fresh event loop per request; each loop gets its
own async Redis client. Before the fix every finished loop kept its client, so each request
left one Redis connection and one file descriptor behind, until Redis refused clients.
"""

from __future__ import annotations

import http.client
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import redis

from benchmarks.site import gunicorn
from tests.redis_server import RedisServer

WORKERS = 4
WARM_UP = 200
REQUESTS = 5_000
#: Connections or fds a worker may hold beyond the baseline (a loop's client being closed).
SLACK_PER_WORKER = 3


class Site(NamedTuple):
    """gunicorn with sync workers serving tests/e2e/async_view_site.py."""

    port: int
    master: subprocess.Popen[bytes]

    def get(self) -> tuple[int, str]:
        """GET / once (a sync worker closes every connection) and return status and body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's children (the workers)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (ppid) follows the command name in parentheses.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.master.pid:
                pids.append(int(entry.name))
        return sorted(pids)

    def open_fds(self) -> dict[int, int]:
        """Return each worker's number of open file descriptors."""
        return {pid: len(os.listdir(f"/proc/{pid}/fd")) for pid in self.worker_pids()}


@pytest.fixture
def site(private_redis: RedisServer) -> Iterator[Site]:
    """The site on a Redis of this test alone: its client count is the site's."""
    app = "tests.e2e.async_view_site:application"
    with gunicorn(app, {"TIERCACHE_TEST_REDIS_URL": private_redis.url}, WORKERS) as served:
        yield Site(*served)


def _serve(site: Site, count: int) -> tuple[set[int], int]:
    """Send `count` requests from 8 threads (all must answer 200).

    Return the pids that answered and the highest visit count they reported.
    """
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: site.get(), range(count)))
    assert {status for status, _ in answers} == {200}
    replies = [body.split() for _, body in answers]
    return {int(pid) for pid, _ in replies}, max(int(seen) for _, seen in replies)


def _redis_clients(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as probe:
        return int(probe.info("clients")["connected_clients"]) - 1  # not this probe


def test_five_thousand_async_requests_leave_connections_and_fds_flat(
    site: Site, private_redis: RedisServer
) -> None:
    warmed: set[int] = set()
    for _ in range(5):  # until every worker has served (and made what it keeps)
        warmed |= _serve(site, WARM_UP)[0]
        if len(warmed) == WORKERS:
            break
    assert len(warmed) == WORKERS, "every worker took part in the warm-up"
    clients_before = _redis_clients(private_redis.url)
    fds_before = site.open_fds()

    answered, visits = _serve(site, REQUESTS)

    clients_after = _redis_clients(private_redis.url)
    fds_after = site.open_fds()
    print(
        f"\nRedis clients {clients_before} -> {clients_after}; "
        f"worker fds {sorted(fds_before.values())} -> {sorted(fds_after.values())}"
    )
    assert answered == set(fds_before) == set(fds_after), "the same workers served throughout"
    # The visit counter lives in Redis (and the warm-up counted too): the cache really ran.
    assert visits >= REQUESTS
    assert clients_after <= clients_before + WORKERS * SLACK_PER_WORKER
    for pid, fds in fds_after.items():
        assert fds <= fds_before[pid] + SLACK_PER_WORKER, (
            f"worker {pid}: {fds_before[pid]} -> {fds}"
        )

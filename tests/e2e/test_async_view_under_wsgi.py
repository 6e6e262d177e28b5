"""Async views under gunicorn sync workers keep Redis connections and fds flat (issue 11, 14).

Django runs an async view under WSGI on a fresh event loop per request; each loop gets its
own async Redis client. Before the fix every finished loop kept its client, so each request
left one Redis connection and one file descriptor behind, until Redis refused clients.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer, port_is_free

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
WARM_UP = 200
REQUESTS = 5_000
#: Connections a worker may hold at rest (sync pool, loop client being closed, listener).
SLACK_PER_WORKER = 3


class Site:
    """gunicorn with sync workers serving tests/e2e/async_view_site.py."""

    def __init__(self, redis_url: str, port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "--workers",
                str(WORKERS),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "tests.e2e.async_view_site:application",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TIERCACHE_TEST_REDIS_URL": redis_url},
        )

    def get(self) -> tuple[int, str]:
        """GET / once (a sync worker closes every connection) and return status and body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "gunicorn exited"
            try:
                self.get()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail("gunicorn did not answer within 30 s")

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
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                pids.append(int(entry.name))
        return sorted(pids)

    def open_fds(self) -> dict[int, int]:
        """Return each worker's number of open file descriptors."""
        return {pid: len(os.listdir(f"/proc/{pid}/fd")) for pid in self.worker_pids()}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def site(private_redis: RedisServer) -> Iterator[Site]:
    """The site on a Redis of this test alone: its client count is the site's."""
    running = Site(private_redis.url, _free_port())
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def _free_port() -> int:
    for port in range(21000 + os.getpid() % 1000 * 7, 65000):
        if port_is_free(port):
            return port
    raise RuntimeError("no free port")


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
    probe = redis.Redis.from_url(redis_url)
    try:
        return int(probe.info("clients")["connected_clients"]) - 1  # not this probe
    finally:
        probe.close()


def test_five_thousand_async_requests_leave_connections_and_fds_flat(
    site: Site, private_redis: RedisServer
) -> None:
    warmed, _ = _serve(site, WARM_UP)
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

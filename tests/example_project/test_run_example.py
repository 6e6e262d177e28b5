"""`bash example_project/run.sh`, as a new user runs it: which Redis the example uses."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


class Example:
    """The example site, started the way run.sh starts it (after setup)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = _free_port()
        args = ("--port", str(self.port), *args)
        env = {
            **os.environ,
            "TIERCACHE_EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
            "TIERCACHE_DEMO_PASSWORD": "pw",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("TIERCACHE_REDIS_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "example_project/manage.py", "tiercache_demo", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self.banner = ""
        for line in self.process.stdout:
            self.banner += line
            if "Redis:" in line:
                break
        match = re.search(r"Redis:\s+(\S+)\s+\[(.*)\]", self.banner)
        assert match, self.banner
        self.redis_url, self.how = match.groups()

    def get(self, path: str) -> int:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}") as response:
                    return int(response.status)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return out


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Example]:
    site = Example(tmp_path)
    try:
        yield site
    finally:
        site.stop()


def test_by_default_the_example_runs_its_own_redis_and_stops_it(example: Example) -> None:
    assert example.how == "private redis-server, stopped on exit"
    assert not example.redis_url.startswith("redis://127.0.0.1:6379")
    assert example.get("/users/1/") == 200
    with redis.Redis.from_url(example.redis_url) as client:
        assert client.keys("dj:*")  # the site's keys went to its own Redis
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}

    assert "Stopped the private redis-server." in example.stop()
    assert not _answers(example.redis_url)


def test_with_redis_url_the_example_uses_that_redis_and_leaves_it_running(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    example = Example(tmp_path, "--redis", private_redis.url)
    try:
        assert example.redis_url == private_redis.url
        assert example.how.startswith("given with --redis")
        assert example.get("/users/1/") == 200
        with redis.Redis.from_url(private_redis.url) as client:
            assert client.keys("dj:*")
    finally:
        example.stop()
    assert _answers(private_redis.url)

"""Async views under WSGI: do Redis connections pile up? (a measurement, not a test)

    .venv/bin/python -m benchmarks.wsgi_loops [--requests 5000] [--workers 4]

Django runs an async view under WSGI on a fresh event loop per request. This starts a
private `redis-server` and gunicorn with sync workers on the test project
(`tests.django_tiercache`), sends requests to its async view `/async-user/` (an `aset`
and `aget`s each), and prints the Redis client count and the workers' open file
descriptors every 1,000 requests: both must stay flat.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]


def _fds(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.django_tiercache.settings",
            "TIERCACHE_TEST_REDIS_URL": server.url,
            "PYTHONPATH": str(ROOT),
        }
        port = 18000 + os.getpid() % 1000
        command = [
            sys.executable, "-m", "gunicorn", "-k", "sync",
            "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
            "django.core.wsgi:get_wsgi_application()",
        ]  # fmt: skip
        gunicorn = subprocess.Popen(
            command, env=env, cwd=ROOT, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/async-user/"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(url, timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.1)
            raw = redis.Redis.from_url(server.url)
            children = subprocess.check_output(["pgrep", "-P", str(gunicorn.pid)]).split()
            workers = [int(pid) for pid in children]
            for _ in range(200):  # every worker has built its caches
                urllib.request.urlopen(url, timeout=5).read()
            print(f"after 200 requests: {len(raw.client_list())} Redis clients, "
                  f"{_fds(workers)} worker fds", flush=True)  # fmt: skip
            for n in range(1, args.requests + 1):
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
                if n % 1000 == 0:
                    print(f"after {n} more: {len(raw.client_list())} Redis clients, "
                          f"{_fds(workers)} worker fds", flush=True)  # fmt: skip
        finally:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            gunicorn.wait(10)


if __name__ == "__main__":
    main()

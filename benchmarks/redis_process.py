"""A private redis-server for one benchmark run: the tests' helper, or a tiny stand-in."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

__all__ = ["private_redis", "redis_version"]


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """Run a redis-server without persistence on a free port; yield its base URL."""
    try:
        from tests.redis_server import RedisServer
    except ImportError:  # run from outside the repository root
        with _standalone_redis() as port:
            yield f"redis://127.0.0.1:{port}"
        return
    with RedisServer() as server:
        yield f"redis://127.0.0.1:{server.port}"


def redis_version(base_url: str) -> str:
    """Return the server's version as INFO reports it."""
    with redis.Redis.from_url(f"{base_url}/0") as client:
        return str(client.info("server")["redis_version"])


@contextlib.contextmanager
def _standalone_redis() -> Iterator[int]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH; run `bash .ci/setup.sh` first")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="tiercache-bench-redis-")
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", workdir]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with redis.Redis(port=port) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)

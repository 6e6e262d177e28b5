"""Measure coherence and resilience figures (a measurement, not a test).

    .venv/bin/python -m benchmarks.propagation [--writes 2000] [--quick]

1. Propagation: an idle process holds a key in L1 (read through its tracked fill
   connection); another process writes it, and Redis sends the holder an invalidation.
   Latency is from just before the writer's `set` to the moment the reader's listener
   thread has dropped the L1 copy (CLOCK_MONOTONIC is shared by the processes of one
   host).
2. Breaker open: with Redis SIGKILLed, the time 1,000 gets of cold keys take once the
   circuit is open, next to the same gets with the breaker disabled.
3. Stampede: 8 processes x 16 threads ask for one cold key at once; loader calls are
   counted in Redis, with and without the cross-process lock.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from returns.result import Failure

ROOT = Path(__file__).resolve().parents[1]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.propagation", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _server():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    return RedisServer()


# -- roles run in child processes ------------------------------------------------------


def _reader(url: str) -> None:
    """Hold "hot" in L1; print when each invalidation of it has been applied."""
    from tiercache import TieredCache

    cache = TieredCache.from_url(url, l1_ttl=600)
    applied: list[int] = []
    done = threading.Event()
    receive = cache.bus.receive

    def timed(invalidation):  # type: ignore[no-untyped-def]
        receive(invalidation)
        if "tc:hot" in invalidation.keys:
            applied.append(time.monotonic_ns())
            done.set()

    cache.bus.receive = timed  # type: ignore[method-assign]
    cache.get("hot")
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "next":
            break
        done.wait(5)
        done.clear()
        value = cache.get("hot").value_or(None)  # refill L1 for the next round
        assert cache.l1 is not None
        assert cache.l1.get("tc:hot") == value
        print(applied[-1] if applied else -1, flush=True)


def _stampede(url: str, lock: bool) -> None:
    from tiercache import TieredCache

    cache = TieredCache.from_url(url)
    counter = redis.Redis.from_url(url)

    def loader() -> str:
        counter.incr("calls")
        time.sleep(0.3)
        return "computed"

    print("ready", flush=True)
    sys.stdin.readline()
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        cache.get_or_set("cold", loader, 60, lock=lock)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("done", flush=True)


# -- the measurements ------------------------------------------------------------------


def propagation(url: str, writes: int) -> dict[str, float]:
    from tiercache import TieredCache

    reader = _spawn("--role", "reader", url)
    assert reader.stdin is not None
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    writer = TieredCache.from_url(url, l1_maxsize=0)
    latencies: list[float] = []
    try:
        for n in range(writes):
            time.sleep(0.001)  # the reader is idle between writes
            reader.stdin.write("next\n")
            reader.stdin.flush()
            started = time.monotonic_ns()
            writer.set("hot", str(n))
            applied = int(reader.stdout.readline())
            latencies.append((applied - started) / 1e6)
    finally:
        reader.stdin.close()
        reader.wait(10)
        writer.close()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
        "writes": float(len(latencies)),
    }


def breaker_open(server, gets: int = 1000) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from tiercache import TieredCache

    figures: dict[str, float] = {}
    for label, threshold in (("breaker_open_ms", 3), ("no_breaker_ms", 10**9)):
        if not server.is_running():
            server.start()
        cache = TieredCache.from_url(server.url, breaker_threshold=threshold, breaker_reset=60)
        cache.get("warm")
        server.kill()
        for n in range(3):  # trips the breaker (when it is on)
            cache.get(f"trip:{n}")
        started = time.perf_counter()
        for n in range(gets):
            assert isinstance(cache.get(f"cold:{n}"), Failure)
        figures[label] = (time.perf_counter() - started) * 1000
        cache.close()
    return figures


def stampede(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with redis.Redis.from_url(url) as raw:
        for lock in (True, False):
            raw.flushdb()
            children = [_spawn("--role", "stampede", url, str(lock)) for _ in range(8)]
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "done"
                assert child.stdin is not None
                child.stdin.close()
                child.wait(10)
            counts["with_lock" if lock else "without_lock"] = int(raw.get("calls") or 0)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 writes, for a smoke run")
    args = parser.parse_args()
    if args.role:
        role, url, *rest = args.role
        if role == "reader":
            _reader(url)
        else:
            _stampede(url, rest[0] == "True")
        return
    with _server() as server:
        with redis.Redis.from_url(server.url) as raw:
            version = raw.info("server")["redis_version"]
        print(f"redis-server {version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        figures = propagation(server.url, 200 if args.quick else args.writes)
        print(
            f"propagation over {figures['writes']:.0f} writes: p50 {figures['p50_ms']:.3f} ms,"
            f" p99 {figures['p99_ms']:.3f} ms, max {figures['max_ms']:.3f} ms"
        )
        loads = stampede(server.url)
        print(
            "stampede, 8 processes x 16 threads on one cold key: loader calls "
            f"{loads['with_lock']} with the lock, {loads['without_lock']} without"
        )
        timings = breaker_open(server)
        print(
            f"Redis killed, 1,000 gets of cold keys: {timings['breaker_open_ms']:.2f} ms with "
            f"the breaker open, {timings['no_breaker_ms']:.2f} ms without a breaker"
        )


if __name__ == "__main__":
    main()

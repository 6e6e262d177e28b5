"""Failover timings on real topologies: when writes come back, how slow reads get.

    .venv/bin/python -m benchmarks.failover [--runs 3]

For each scenario (CLUSTER FAILOVER on a replica; SIGKILL of a cluster primary; SIGKILL
of the Sentinel master) two threads read (`get_many` of 60 keys over every slot, and
`get` of a key on the failing node) while the main thread writes that key every 10 ms.
It reports the first successful write after the event, the slowest read call during
it, and whether any call raised. Writes `benchmarks/results/failover-latest.md`.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from returns.result import Success

from benchmarks.report import save
from tests.redis_topology import RedisClusterServers, RedisSentinelServers
from tiercache import TieredCache

RESULTS = Path(__file__).parent / "results" / "failover-latest.md"
KEYS = [f"user:{i}" for i in range(60)]
GIVE_UP = 30.0


@contextmanager
def _readers(cache: TieredCache) -> Iterator[dict[str, float]]:
    """Read in two threads; yield the figures they keep (slowest read, raised)."""
    figures = {"slowest": 0.0, "raised": 0.0}
    stop = threading.Event()

    def read(call: Callable[[], object]) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                call()
            except Exception:  # the point: a read must never raise
                figures["raised"] += 1
            figures["slowest"] = max(figures["slowest"], time.perf_counter() - started)

    threads = [
        threading.Thread(target=read, args=(lambda: cache.get_many(KEYS),)),
        threading.Thread(target=read, args=(lambda: cache.get("user:1"),)),
    ]
    for thread in threads:
        thread.start()
    try:
        yield figures
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _first_write(cache: TieredCache, since: float) -> float:
    """Write user:1 every 10 ms; return the seconds from `since` to the first success."""
    while time.perf_counter() - since < GIVE_UP:
        if isinstance(cache.set("user:1", "after"), Success):
            return time.perf_counter() - since
        time.sleep(0.01)
    return float("inf")


def _measure(cache: TieredCache, event: Callable[[], object]) -> tuple[float, float, float]:
    cache.set_many(dict.fromkeys(KEYS, "before"))
    with _readers(cache) as figures:
        time.sleep(0.2)
        happening = threading.Thread(target=event)
        started = time.perf_counter()
        happening.start()
        first = _first_write(cache, started)
        happening.join()
        time.sleep(0.2)
    return first, figures["slowest"], figures["raised"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    rows: list[tuple[str, float, float, float]] = []
    with RedisClusterServers() as cluster:
        for _ in range(runs):
            cluster.heal()
            cache = TieredCache.from_url(cluster.seed_url, cluster=True)
            replica = cluster.replica_of(cluster.primary_for("tc:user:1"))
            failover = functools.partial(cluster.failover, replica)
            rows.append(("CLUSTER FAILOVER", *_measure(cache, failover)))
            cache.close()
        for _ in range(runs):
            cluster.heal()
            cache = TieredCache.from_url(cluster.seed_url, cluster=True)
            victim = cluster.primary_for("tc:user:1")
            rows.append(("SIGKILL of a cluster primary", *_measure(cache, victim.kill)))
            cache.close()
    with RedisSentinelServers() as sentinel:
        for _ in range(runs):
            sentinel.heal()
            cache = TieredCache.from_url(sentinel.url, sentinels=sentinel.sentinels)
            rows.append(
                ("SIGKILL of the Sentinel master", *_measure(cache, sentinel.master().kill))
            )
            cache.close()
    lines = [
        "# Failover timings",
        "",
        f"`python -m benchmarks.failover --runs {runs}`: Redis Cluster 3+3 with "
        "`cluster-node-timeout 1000`, `cluster-require-full-coverage no`; Sentinel with "
        "`down-after-milliseconds 1000`; default cache timeouts (0.25 s / 0.5 s). A shared "
        "2-vCPU VM.",
        "",
        "| event | first successful write after it | slowest read during it | calls that raised |",
        "|---|---|---|---|",
        *[
            f"| {name} | {first:.2f} s | {slowest * 1000:.0f} ms | {raised:.0f} |"
            for name, first, slowest, raised in rows
        ],
        "",
    ]
    save(lines, RESULTS)


if __name__ == "__main__":
    main()

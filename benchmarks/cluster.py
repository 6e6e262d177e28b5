"""Redis Cluster against standalone and against redis-py's own cluster client.

    .venv/bin/python -m benchmarks.cluster [--rounds 15] [--calls 20]

Starts a private 3-primary Redis Cluster and a standalone Redis (the tests' launchers),
and times, interleaved in shuffled rounds, one call of:

* `get_many(100)` cold on the cluster: 100 keys over all slots that this process's L1
  does not hold (written by another cache), each group read once;
* the same on standalone Redis;
* redis-py's `RedisCluster.mget_nonatomic` of the same 100 keys;
* an L1 hit (`get` of a key L1 holds) on the cluster and on standalone.

Targets (issue 10): get_many(100) cold <= 0.5 x mget_nonatomic and <= 2 x standalone;
an L1 hit equal to standalone's. Writes `benchmarks/results/cluster-latest.md`.
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from redis.cluster import RedisCluster

from benchmarks.report import save
from tests.redis_server import RedisServer
from tests.redis_topology import RedisClusterServers
from tiercache import TieredCache

RESULTS = Path(__file__).parent / "results" / "cluster-latest.md"
VALUE = "x" * 100


def _groups(prefix: str, groups: int) -> list[list[str]]:
    return [[f"{prefix}:{g}:{i}" for i in range(100)] for g in range(groups)]


def _fill(url: str, groups: list[list[str]], **options: object) -> None:
    writer = TieredCache.from_url(url, l1_maxsize=0, **options)  # not the reader's L1
    for keys in groups:
        writer.set_many(dict.fromkeys(keys, VALUE))
    writer.close()


def _timed(calls: list[Callable[[], object]]) -> float:
    """Return the mean seconds per call of `calls`, run back to back."""
    gc.disable()
    try:
        start = time.perf_counter()
        for call in calls:
            call()
        return (time.perf_counter() - start) / len(calls)
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="calls per timed batch")
    args = parser.parse_args()
    rounds, calls = args.rounds, args.calls
    with RedisClusterServers(primaries=3, replicas=0) as cluster, RedisServer() as standalone:
        seed, url = cluster.seed_url, standalone.url
        cold = {
            "cluster": _groups("c", rounds * calls),
            "standalone": _groups("s", rounds * calls),
        }
        _fill(seed, cold["cluster"], cluster=True)
        _fill(url, cold["standalone"])
        on_cluster = TieredCache.from_url(seed, cluster=True)
        on_standalone = TieredCache.from_url(url)
        raw = RedisCluster.from_url(seed)
        for cache in (on_cluster, on_standalone):
            cache.set("hot", VALUE)
            cache.get("hot")  # now in L1
        stored = [[f"tc:{key}" for key in keys] for keys in cold["cluster"]]
        fresh = {
            "get_many(100) cold, cluster": (on_cluster.get_many, iter(cold["cluster"])),
            "get_many(100) cold, standalone": (on_standalone.get_many, iter(cold["standalone"])),
            "redis-py mget_nonatomic(100), cluster": (raw.mget_nonatomic, iter(stored)),
        }

        def batch(name: str) -> list[Callable[[], object]]:
            """Return the calls of one timed batch of `name` (cold rows: unread keys)."""
            if name in fresh:
                read, groups = fresh[name]
                return [functools.partial(read, next(groups)) for _ in range(calls)]
            cache = on_cluster if name == "L1 hit, cluster" else on_standalone
            return [functools.partial(cache.get, "hot")] * (calls * 50)

        names = [
            "get_many(100) cold, cluster",
            "get_many(100) cold, standalone",
            "redis-py mget_nonatomic(100), cluster",
            "L1 hit, cluster",
            "L1 hit, standalone",
        ]
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(rounds):
            order = names[:]
            random.shuffle(order)
            for name in order:
                samples[name].append(_timed(batch(name)))
        found = on_cluster.get_many(cold["cluster"][0]).unwrap()
        assert sum(value is not None for value in found.values()) == 100
        on_cluster.close()
        on_standalone.close()
        raw.close()
    _report(samples, rounds, calls)


def _report(samples: dict[str, list[float]], rounds: int, calls: int) -> None:
    median = {name: statistics.median(values) for name, values in samples.items()}
    cold, alone = median["get_many(100) cold, cluster"], median["get_many(100) cold, standalone"]
    nonatomic = median["redis-py mget_nonatomic(100), cluster"]
    hit, hit_alone = median["L1 hit, cluster"], median["L1 hit, standalone"]
    lines = [
        "# Redis Cluster benchmark",
        "",
        f"`python -m benchmarks.cluster --rounds {rounds} --calls {calls}`: 3 primaries, "
        f"Python {platform.python_version()}, {platform.machine()}; medians of {rounds} "
        "interleaved rounds (a shared 2-vCPU VM: other jobs ran meanwhile).",
        "",
        "| row | median per call |",
        "|---|---|",
        *[f"| {name} | {value * 1e6:.1f} µs |" for name, value in median.items()],
        "",
        "| target | ratio | met |",
        "|---|---|---|",
        f"| get_many(100) cold <= 0.5 x mget_nonatomic | {cold / nonatomic:.2f} | "
        f"{'yes' if cold <= 0.5 * nonatomic else 'no'} |",
        f"| get_many(100) cold <= 2 x standalone | {cold / alone:.2f} | "
        f"{'yes' if cold <= 2 * alone else 'no'} |",
        f"| L1 hit equal to standalone | {hit / hit_alone:.2f} | "
        f"{'yes' if hit <= 1.1 * hit_alone else 'no'} |",
        "",
    ]
    save(lines, RESULTS)


if __name__ == "__main__":
    main()

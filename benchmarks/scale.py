"""What a write costs as the fleet grows (a measurement, not a test).

    .venv/bin/python -m benchmarks.scale [--workers 100] [--writes 3000] [--output PATH]

It forks N idle worker processes, each a `TieredCache` holding 10 hot keys in L1, then:

1. times writes of cold keys (no worker holds them) through tiercache against a bare
   redis-py SET of the same size, interleaved one by one: the writer latency ratio;
2. runs the same writes in alternating batches and reads Redis's CPU from `INFO cpu`
   around each batch: Redis CPU per write, as a ratio to the bare SET;
3. sums the CPU the idle workers spent during the tiercache batches
   (`/proc/<pid>/stat`, utime + stime): fleet CPU per write;
4. writes one hot key through tiercache and another through plain redis-py, waits 2 s,
   and asks every worker whether its L1 still holds the old value: stale copies.

The report goes to stdout and, with `--output`, to a Markdown file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
HOT = 10
PAYLOAD = "x" * 100
TICKS = os.sysconf("SC_CLK_TCK")


def _server():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    return RedisServer("--maxclients", "10000")


def _worker(url: str, requests: int, answers: int) -> None:
    """Hold the hot keys in L1, then answer the parent's questions until told to stop."""
    from tiercache import TieredCache

    cache = TieredCache.from_url(url, l1_ttl=600)
    assert cache.l1 is not None
    for _ in range(100):
        for i in range(HOT):
            cache.get(f"hot:{i}")
        if all(cache.l1.get(f"tc:hot:{i}") == "old" for i in range(HOT)):
            break
    os.write(answers, b"r")
    while True:
        question = os.read(requests, 64).decode()
        if not question or question == "stop":
            os._exit(0)
        # "stale KEY": does L1 still hold the value it held before the write?
        held = cache.l1.get(f"tc:{question.split()[1]}")
        os.write(answers, b"s" if held == "old" else b"f")


class Fleet:
    """N forked idle workers, each with a pipe for questions and one for answers."""

    def __init__(self, url: str, size: int) -> None:
        self.workers: list[tuple[int, int, int]] = []
        for _ in range(size):
            requests_r, requests_w = os.pipe()
            answers_r, answers_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                _worker(url, requests_r, answers_w)
            self.workers.append((pid, requests_w, answers_r))
        for _, _, answers in self.workers:
            assert os.read(answers, 1) == b"r"

    def cpu_seconds(self) -> float:
        """Return the user + system CPU every worker has used so far."""
        total = 0
        for pid, _, _ in self.workers:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS

    def stale(self, key: str) -> int:
        """Return how many workers still hold the old value of `key`."""
        for _, requests, _ in self.workers:
            os.write(requests, f"stale {key}".encode())
        return sum(os.read(answers, 1) == b"s" for _, _, answers in self.workers)

    def stop(self) -> None:
        for pid, requests, _ in self.workers:
            os.write(requests, b"stop")
            os.waitpid(pid, 0)


def _redis_cpu(raw: redis.Redis) -> float:
    info = raw.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def measure(url: str, workers: int, writes: int) -> dict[str, float]:
    from tiercache import TieredCache

    raw = redis.Redis.from_url(url)
    for i in range(HOT):
        raw.set(f"tc:hot:{i}", "old")
    fleet = Fleet(url, workers)
    writer = TieredCache.from_url(url)
    bare = redis.Redis.from_url(url)
    try:
        for i in range(200):  # warm both paths up
            writer.set(f"warm:{i}", PAYLOAD)
            bare.set(f"tc:warm-bare:{i}", PAYLOAD)
        ours: list[int] = []
        theirs: list[int] = []
        for i in range(writes):
            started = time.perf_counter_ns()
            writer.set(f"cold:{i}", PAYLOAD)
            middle = time.perf_counter_ns()
            bare.set(f"tc:cold-bare:{i}", PAYLOAD)
            ours.append(middle - started)
            theirs.append(time.perf_counter_ns() - middle)

        batch, rounds = max(1, writes // 10), 10
        cpu = {"ours": 0.0, "bare": 0.0, "fleet": 0.0}
        for r in range(rounds):
            before, fleet_before = _redis_cpu(raw), fleet.cpu_seconds()
            for i in range(batch):
                writer.set(f"batch:{r}:{i}", PAYLOAD)
            cpu["ours"] += _redis_cpu(raw) - before
            cpu["fleet"] += fleet.cpu_seconds() - fleet_before
            before = _redis_cpu(raw)
            for i in range(batch):
                bare.set(f"tc:batch-bare:{r}:{i}", PAYLOAD)
            cpu["bare"] += _redis_cpu(raw) - before
        # INFO's own cost lands in both columns alike.
        total = batch * rounds

        writer.set("hot:0", "new-by-tiercache")
        bare.set("tc:hot:1", "new-by-redis-py")
        time.sleep(2.0)
        stale_ours, stale_theirs = fleet.stale("hot:0"), fleet.stale("hot:1")
    finally:
        fleet.stop()
        writer.close()
        bare.close()
        raw.close()
    return {
        "workers": workers,
        "latency_ours_us": statistics.median(ours) / 1000,
        "latency_bare_us": statistics.median(theirs) / 1000,
        "latency_ratio": statistics.median(ours) / statistics.median(theirs),
        "redis_cpu_ours_us": cpu["ours"] / total * 1e6,
        "redis_cpu_bare_us": cpu["bare"] / total * 1e6,
        "redis_cpu_ratio": cpu["ours"] / cpu["bare"] if cpu["bare"] else float("nan"),
        "fleet_cpu_us": cpu["fleet"] / total * 1e6,
        "stale_after_tiercache_write": stale_ours,
        "stale_after_redis_py_write": stale_theirs,
    }


def report(figures: dict[str, float], version: str) -> str:
    n = int(figures["workers"])
    return "\n".join(
        [
            f"## {n} idle workers, each holding {HOT} hot keys (redis-server {version},"
            f" {os.cpu_count()} CPUs)",
            "",
            "| figure | value | target |",
            "|---|--:|---|",
            f"| writer latency, tiercache set / bare redis-py SET | "
            f"{figures['latency_ratio']:.2f} ({figures['latency_ours_us']:.1f} / "
            f"{figures['latency_bare_us']:.1f} µs) | ≤ 1.5 |",
            f"| Redis CPU per write, ratio to a bare SET | {figures['redis_cpu_ratio']:.2f} "
            f"({figures['redis_cpu_ours_us']:.1f} / {figures['redis_cpu_bare_us']:.1f} µs) "
            "| ≤ 2.5 |",
            f"| CPU the idle fleet spends per write, summed | {figures['fleet_cpu_us']:.1f} µs"
            " | ≤ 20 µs |",
            f"| workers still holding the old value 2 s after a tiercache write | "
            f"{int(figures['stale_after_tiercache_write'])} / {n} | 0 |",
            f"| workers still holding the old value 2 s after a plain redis-py write | "
            f"{int(figures['stale_after_redis_py_write'])} / {n} | 0 |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[100])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sections = []
    for workers in args.workers:
        with _server() as server:
            with redis.Redis.from_url(server.url) as raw:
                version = raw.info("server")["redis_version"]
            section = report(measure(server.url, workers, args.writes), version)
        print(section, flush=True)
        sections.append(section)
    if args.output is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        header = (
            f"# tiercache scale benchmark, {stamp}\n\n`python -m benchmarks.scale --workers "
            f"{' '.join(map(str, args.workers))} --writes {args.writes}`; load average after: "
            f"{load}. The machine is shared with other work: single figures move.\n\n"
        )
        args.output.write_text(header + "\n".join(sections))


if __name__ == "__main__":
    main()

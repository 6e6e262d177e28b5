"""`python -m benchmarks.export`: what exporting the figures costs an L1 hit.

Two pairs, each timed in alternating rounds (median of the rounds):

- core `TieredCache.get`, an L1 hit: plain, versus `tiercache.otel.instrument`ed with
  an OpenTelemetry SDK reader collecting every second in a background thread;
- the Django backend's `cache.get`, an L1 hit inside a request scope (as under the
  middleware): plain, versus the same with a thread pushing into Redis and scraping
  `TiercacheCollector` every second (`--every`; the defaults are 5 s and 15 s).

The target is a ratio (on/off) of at most 1.1: recording is the same plain counting
either way; export reads the counters from other threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.redis_process import private_redis

HITS = 200_000
EVERY = 1.0  # seconds between two collections of the export thread


def main(argv: list[str] | None = None) -> int:
    """Run both pairs and print per-hit times and ratios."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--every",
        type=float,
        default=1.0,
        help="seconds between two collections/pushes/scrapes (Prometheus scrapes every 15 s)",
    )
    args = parser.parse_args(argv)
    global EVERY  # noqa: PLW0603 - one knob for the background threads of this run
    EVERY = args.every
    with private_redis() as base:
        url = f"{base}/0"
        core = _pair(_core_hit(url, export=False), _core_hit(url, export=True), args.rounds)
        django = _pair(_django_hit(url, export=False), _django_hit(url, export=True), args.rounds)
    print(f"{'L1 hit':34}{'off ns':>10}{'on ns':>10}{'on/off':>9}")
    for name, (off, on) in (
        ("core TieredCache + OTel", core),
        ("Django backend + Prometheus", django),
    ):
        print(f"{name:34}{off:10.0f}{on:10.0f}{on / off:9.3f}")
    return 0


@dataclass
class Subject:
    """A timed loop of L1 hits, with export started and stopped outside the timing."""

    hits: Callable[[], None]
    start: Callable[[], None] = lambda: None
    stop: Callable[[], None] = lambda: None


def _pair(off: Subject, on: Subject, rounds: int) -> tuple[float, float]:
    """Return the median ns per hit of each subject, timed in alternating rounds."""
    times: dict[str, list[float]] = {"off": [], "on": []}
    for round_ in range(rounds):
        order = [("off", off), ("on", on)]
        for name, subject in order if round_ % 2 else reversed(order):
            subject.start()
            started = time.perf_counter()
            subject.hits()
            elapsed = time.perf_counter() - started
            subject.stop()
            times[name].append(elapsed / HITS * 1e9)
    return statistics.median(times["off"]), statistics.median(times["on"])


def _core_hit(url: str, *, export: bool) -> Subject:
    from tiercache import TieredCache

    cache = TieredCache.from_url(url, key_prefix=f"bench-{export}:")
    cache.set("user:1", "Ada")
    get = cache.get

    def hits() -> None:
        for _ in range(HITS):
            get("user:1")

    if not export:
        return Subject(hits)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tiercache.otel import instrument

    reader = InMemoryMetricReader()
    instrument(cache, name="bench", meter=MeterProvider(metric_readers=[reader]).get_meter("b"))
    return Subject(hits, *_background(reader.get_metrics_data))


def _django_hit(url: str, *, export: bool) -> Subject:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.site_app")
    os.environ["BENCH_REDIS_URL"] = url
    import django

    django.setup()
    from django.core.cache import caches

    from django_tiercache.metrics import metrics_for, request_scope

    cache = caches["default"]
    cache.set("user:1", {"name": "Ada"})
    get = cache.get

    def hits() -> None:
        with request_scope():
            for _ in range(HITS):
                get("user:1")

    if not export:
        return Subject(hits)
    from prometheus_client import CollectorRegistry, generate_latest

    from django_tiercache.prometheus import TiercacheCollector

    metrics = metrics_for("default")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TiercacheCollector(["default"]))

    def push_and_scrape() -> None:
        metrics.push()
        generate_latest(registry)

    return Subject(hits, *_background(push_and_scrape))


def _background(work: Callable[[], object]) -> tuple[Callable[[], None], Callable[[], None]]:
    """Return (start, stop) of a thread doing `work` every `EVERY` s, as a collector would."""
    state: dict[str, object] = {}

    def start() -> None:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(EVERY):
                work()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        state.update(stop=stop, thread=thread)

    def stop() -> None:
        event, thread = state["stop"], state["thread"]
        assert isinstance(event, threading.Event)
        assert isinstance(thread, threading.Thread)
        event.set()
        thread.join()

    return start, stop


if __name__ == "__main__":
    raise SystemExit(main())

"""The rounds: every subject back to back in shuffled order, per operation, then throughput."""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

from benchmarks.floors import FLOORS, Closers, FloorBatch
from benchmarks.operations import OPERATIONS, Batch, Context
from benchmarks.subjects import VALUE_STR, Setup, Subject
from benchmarks.throughput import ProcessPool, threaded_ops_per_second
from benchmarks.writer import Writer

__all__ = ["Plan", "Samples", "run"]


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    rounds: int
    #: Multiplies every operation's calls per batch.
    scale: float
    #: A repeatable batch (hits, floors) runs again until it has lasted this long.
    min_batch_ms: float
    settle_s: float
    throughput_rounds: int
    throughput_seconds: float
    threads: int
    processes: int
    seed: int

    def calls(self, full: int) -> int:
        """Return the calls per batch for an operation with `full` calls in a full run."""
        return max(2, round(full * self.scale))


@dataclass
class Samples:
    """Per-round measurements, in round order, so per-round ratios line up."""

    subjects: list[Subject]
    #: (operation key, subject name) -> µs per call, one per round.
    latency: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    #: floor key -> µs per call, one per round.
    floors: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: subject name -> get hits per second, one per throughput round.
    threads: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    processes: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0


def run(plan: Plan, setup: Setup) -> Samples:
    """Measure every operation, floor and throughput for every subject; round 0 is a warm-up."""
    started = time.monotonic()
    samples = Samples(setup.subjects())
    rng = random.Random(plan.seed)
    loop = asyncio.new_event_loop()
    with Writer(setup) as writer, ProcessPool(setup, plan.processes) as pool:
        context = Context(writer, loop, int(plan.min_batch_ms * 1e6), plan.settle_s)
        calls = {s.name: setup.calls(s) for s in samples.subjects}
        closers: Closers = []
        floors = {f.key: f.open(f"{setup.base_url}/0", loop, closers) for f in FLOORS}
        for round_no in range(plan.rounds + 1):
            keep = round_no > 0
            for operation in OPERATIONS:
                order = [s for s in samples.subjects if s.shared or not operation.shared_only]
                for subject in rng.sample(order, len(order)):
                    batch = operation.prepare(
                        context, subject, calls[subject.name], plan.calls(operation.calls)
                    )
                    per_call = _per_call_us(batch)
                    if keep:
                        samples.latency[operation.key, subject.name].append(per_call)
            for floor in rng.sample(FLOORS, len(FLOORS)):
                per_call = _per_call_us(_repeated(floors[floor.key], plan.calls(floor.calls), plan))
                if keep:
                    samples.floors[floor.key].append(per_call)
            _progress(f"round {round_no}/{plan.rounds}{'' if keep else ' (warm-up)'}", started)
        for round_no in range(plan.throughput_rounds):
            for subject in rng.sample(samples.subjects, len(samples.subjects)):
                (key,) = context.keys(1)
                calls[subject.name].set(key, VALUE_STR)
                seconds = plan.throughput_seconds
                samples.threads[subject.name].append(
                    threaded_ops_per_second(setup, subject, key, plan.threads, seconds)
                )
                samples.processes[subject.name].append(pool.ops_per_second(subject, key, seconds))
            _progress(f"throughput round {round_no + 1}/{plan.throughput_rounds}", started)
        for close in closers:
            close()
        setup.close(samples.subjects, loop)
    loop.close()
    samples.seconds = time.monotonic() - started
    return samples


def _per_call_us(batch: Batch) -> float:
    """Run `batch` with the cyclic collector off, as `timeit` does; return µs per call."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        elapsed, done = batch()
    finally:
        if enabled:
            gc.enable()
    return elapsed / done / 1e3


def _repeated(floor: FloorBatch, n: int, plan: Plan) -> Batch:
    """Return a batch of `n` calls of `floor`, run again until it has lasted long enough."""

    def batch() -> tuple[int, int]:
        elapsed = done = 0
        while not done or elapsed < plan.min_batch_ms * 1e6:
            elapsed += floor(n)
            done += n
        return elapsed, done

    return batch


def _progress(message: str, started: float) -> None:
    print(f"benchmarks: {message}, {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

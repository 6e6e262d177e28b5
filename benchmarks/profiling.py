"""`python -m benchmarks.profiling OPERATION [SUBJECT]`: where one operation spends its time.

Runs the same batch as the benchmark, under cProfile (default) or pyinstrument, and
prints the top functions. Example: `python -m benchmarks.profiling get_many_cold tiered`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys

from benchmarks.operations import OPERATIONS, Context
from benchmarks.redis_process import private_redis
from benchmarks.subjects import Setup
from benchmarks.writer import Writer


def main(argv: list[str] | None = None) -> int:
    """Profile one operation of one subject; return the exit status."""
    operations = {operation.key: operation for operation in OPERATIONS}
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("operation", choices=sorted(operations))
    parser.add_argument("subject", nargs="?", default="tiered")
    parser.add_argument("--calls", type=int, help="calls per batch (default: 10x a full run's)")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--top", type=int, default=25, help="functions to print")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--pyinstrument", action="store_true", help="a call tree instead")
    args = parser.parse_args(argv)
    operation = operations[args.operation]
    with private_redis() as base_url:
        setup = Setup(base_url)
        setup.configure()
        subjects = {subject.name: subject for subject in setup.subjects()}
        if args.subject not in subjects:
            parser.error(f"subject must be one of {', '.join(subjects)}")
        subject = subjects[args.subject]
        calls = setup.calls(subject)
        loop = asyncio.new_event_loop()
        with Writer(setup) as writer:
            context = Context(writer, loop, min_batch_ns=0, settle_s=0.02)
            n = args.calls or operation.calls * 10
            operation.prepare(context, subject, calls, n)()  # warm-up
            batches = [operation.prepare(context, subject, calls, n) for _ in range(args.batches)]
            if args.pyinstrument:
                from pyinstrument import Profiler

                with Profiler(interval=0.0001) as profiler:
                    timed = [batch() for batch in batches]
                profiler.print(show_all=False)
            else:
                with cProfile.Profile() as profile:
                    timed = [batch() for batch in batches]
                pstats.Stats(profile).strip_dirs().sort_stats(args.sort).print_stats(args.top)
        setup.close([subject], loop)
        loop.close()
        setup.forget()
    per_call = sum(elapsed for elapsed, _ in timed) / sum(done for _, done in timed) / 1e3
    print(f"{operation.label}, {subject.label}: {per_call:.2f} µs per call (while profiled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m benchmarks`: run every benchmark on a private Redis and write the report."""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shlex
import shutil
import sys
from pathlib import Path

from benchmarks.machine import describe
from benchmarks.redis_process import private_redis, redis_version
from benchmarks.report import Run, headline, render
from benchmarks.runner import Plan, run
from benchmarks.subjects import Setup, our_backend_error

RESULTS = Path(__file__).resolve().parent / "results"

FULL = Plan(
    rounds=40,
    scale=1.0,
    min_batch_ms=20,
    settle_s=0.02,
    throughput_rounds=3,
    throughput_seconds=1.0,
    threads=8,
    processes=4,
    seed=0,
)
SMOKE = Plan(
    rounds=1,
    scale=0.01,
    min_batch_ms=0,
    settle_s=0,
    throughput_rounds=1,
    throughput_seconds=0.05,
    threads=8,
    processes=4,
    seed=0,
)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; return the exit status."""
    args = _parser().parse_args(argv)
    base = SMOKE if args.smoke else FULL
    plan = Plan(
        **{
            **base.__dict__,
            "rounds": args.rounds or base.rounds,
            "seed": args.seed if args.seed is not None else random.randrange(10_000),
        }
    )
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    with private_redis() as base_url:
        setup = Setup(base_url)
        setup.configure()
        missing = our_backend_error()
        if missing is not None:
            print(f"benchmarks: our Django backend is left out: {missing}", file=sys.stderr)
        try:
            samples = run(plan, setup)
            machine = describe(redis_version(base_url))
        finally:
            setup.forget()
    report = render(
        samples,
        Run(
            command=shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]),
            plan=plan,
            machine=machine,
            started=started.strftime("%Y-%m-%d %H:%M UTC"),
            backend_missing=missing,
            load_before=load_before,
            load_after=os.getloadavg(),
        ),
    )
    output = args.output or _default_output(args.smoke, started, machine.kind)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    if args.output is None and not args.smoke:
        shutil.copyfile(output, output.parent / "latest.md")
    print("\n".join(headline(samples)))
    print(f"benchmarks: report written to {output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, help=f"measured rounds (default {FULL.rounds})")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run that only proves the harness works"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the Markdown report "
        "(default benchmarks/results/<date>-<host kind>.md and a copy as latest.md)",
    )
    parser.add_argument("--seed", type=int, help="seed of the shuffled order (default: random)")
    return parser


def _default_output(smoke: bool, started: datetime.datetime, kind: str) -> Path:
    if smoke:
        return RESULTS / "smoke.tmp"  # ignored by git
    return RESULTS / f"{started:%Y-%m-%d}-{kind}.md"


if __name__ == "__main__":
    sys.exit(main())

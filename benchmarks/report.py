"""The Markdown report: medians per subject, and medians of per-round ratios."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from benchmarks.floors import FLOORS
from benchmarks.machine import Machine
from benchmarks.operations import OPERATIONS, Operation
from benchmarks.runner import Plan, Samples
from benchmarks.subjects import BUILTIN, CORE, DJANGO_REDIS, LOCMEM, TIERED, Subject

__all__ = ["Run", "headline", "render", "save"]


@dataclass(frozen=True)
class Run:
    """Everything the report says besides the samples."""

    command: str
    plan: Plan
    machine: Machine
    started: str
    #: Why our Django backend is missing, or None when it was measured.
    backend_missing: str | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def render(samples: Samples, run: Run) -> str:
    """Return the whole report."""
    ours = _ours(samples)
    plan = run.plan
    lines = [
        f"# tiercache benchmarks, {run.started}, {run.machine.kind}",
        "",
        f"`{run.command}`: {plan.rounds} round{'s' if plan.rounds != 1 else ''} after a "
        f"warm-up round, seed {plan.seed}, "
        f"{samples.seconds:.0f} s; load average {_load(run.load_before)} before, "
        f"{_load(run.load_after)} after.",
        "",
        "Times are µs per call, the median over rounds. A ratio is the median of the "
        "per-round ratios (each round runs every cache back to back in shuffled order), "
        "so a slow moment of the machine hits both sides of a ratio alike. "
        "See docs/benchmarks.md.",
        "",
    ]
    if run.backend_missing is not None:
        lines += [
            f"**Our Django backend was not measured** ({run.backend_missing}); "
            "'ours' below is the core `tiercache.TieredCache`.",
            "",
        ]
    lines += [f"## Targets: {ours.label} against django-redis", ""]
    lines += _targets_table(samples, ours)
    lines += [
        "",
        "The L1-hit target is for the 100 B string. Each read of the 10 KB dict gets its "
        "own copy: LocMemCache unpickles it (see the floors); our L1 copies it one level, "
        "its 100 items being immutable strings (a nested value is unpickled, as there).",
    ]
    lines += ["", "## Every cache (µs per call)", ""]
    lines += _all_table(samples)
    lines += ["", "## Our caches against django-redis (ratio)", ""]
    lines += _variants_table(samples)
    lines += [
        "",
        f"## Throughput of get hits, 100 B str ({plan.throughput_seconds:g} s each, "
        f"median of {plan.throughput_rounds} round{'s' if plan.throughput_rounds != 1 else ''})",
        "",
    ]
    lines += _throughput_table(samples, plan)
    lines += ["", "## Physical floors, same run (µs per call)", ""]
    lines += _floors_table(samples)
    lines += ["", "## Machine", "", *run.machine.lines(), ""]
    return "\n".join(lines)


def headline(samples: Samples) -> list[str]:
    """Return one line per target: the ratio and whether it is met."""
    ours = _ours(samples)
    lines = []
    for operation in OPERATIONS:
        if operation.target is None:
            continue
        ratio = _ratio(samples, operation, ours, DJANGO_REDIS)
        verdict = _verdict(samples, operation, ours)
        lines.append(
            f"{operation.label}: ours / django-redis = {_fmt_ratio(ratio)} "
            f"(target {operation.target.describe()}: {verdict})"
        )
    return lines


def _ours(samples: Samples) -> Subject:
    return TIERED if TIERED in samples.subjects else CORE


def _targets_table(samples: Samples, ours: Subject) -> list[str]:
    rows = [
        "| operation | ours µs | django-redis µs | locmem µs | Django RedisCache µs "
        "| ours / django-redis | ours / locmem | target | met? |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for operation in OPERATIONS:
        cells = [
            operation.label,
            *(
                _fmt_us(_median(samples, operation, s))
                for s in (ours, DJANGO_REDIS, LOCMEM, BUILTIN)
            ),
            _fmt_ratio(_ratio(samples, operation, ours, DJANGO_REDIS)),
            _fmt_ratio(_ratio(samples, operation, ours, LOCMEM)),
            operation.target.describe() if operation.target else "",
            _verdict(samples, operation, ours) if operation.target else "",
        ]
        rows.append(_row(cells))
    return rows


def _all_table(samples: Samples) -> list[str]:
    rows = [
        _row(["operation", *(s.label for s in samples.subjects)]),
        _row(["---", *("--:" for _ in samples.subjects)]),
    ]
    for operation in OPERATIONS:
        medians = (_fmt_us(_median(samples, operation, s)) for s in samples.subjects)
        rows.append(_row([operation.label, *medians]))
    return rows


def _variants_table(samples: Samples) -> list[str]:
    ours = [s for s in samples.subjects if s.ours]
    rows = [_row(["operation", *(s.label for s in ours)]), _row(["---", *("--:" for _ in ours)])]
    for operation in OPERATIONS:
        ratios = (_fmt_ratio(_ratio(samples, operation, s, DJANGO_REDIS)) for s in ours)
        rows.append(_row([operation.label, *ratios]))
    return rows


def _throughput_table(samples: Samples, plan: Plan) -> list[str]:
    rows = [
        f"| cache | {plan.threads} threads, ops/s | / django-redis "
        f"| {plan.processes} processes, ops/s | / django-redis |",
        "|---|--:|--:|--:|--:|",
    ]
    for subject in samples.subjects:
        cells = [subject.label]
        for table in (samples.threads, samples.processes):
            mine, anchor = table.get(subject.name, []), table.get(DJANGO_REDIS.name, [])
            cells.append(f"{statistics.median(mine):,.0f}" if mine else "n/a")
            ratios = [a / b for a, b in zip(mine, anchor, strict=True)] if anchor else []
            cells.append(f"{statistics.median(ratios):.2f}" if ratios else "n/a")
        rows.append(_row(cells))
    return rows


def _floors_table(samples: Samples) -> list[str]:
    rows = ["| floor | µs per call |", "|---|--:|"]
    for floor in FLOORS:
        values = samples.floors.get(floor.key, [])
        rows.append(_row([floor.label, _fmt_us(statistics.median(values) if values else None)]))
    return rows


def _median(samples: Samples, operation: Operation, subject: Subject) -> float | None:
    values = samples.latency.get((operation.key, subject.name), [])
    return statistics.median(values) if values else None


def _ratio(samples: Samples, operation: Operation, mine: Subject, anchor: Subject) -> float | None:
    """Return the median over rounds of mine / anchor, both measured in that round."""
    a = samples.latency.get((operation.key, mine.name), [])
    b = samples.latency.get((operation.key, anchor.name), [])
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _verdict(samples: Samples, operation: Operation, ours: Subject) -> str:
    target = operation.target
    assert target is not None
    ratio = _ratio(samples, operation, ours, DJANGO_REDIS)
    if ratio is None:
        return "n/a"
    met = ratio <= target.vs_django_redis
    if target.beat_locmem:
        versus_locmem = _ratio(samples, operation, ours, LOCMEM)
        met = met and versus_locmem is not None and versus_locmem < 1
    return "yes" if met else "**no**"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt_us(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def save(lines: list[str], path: Path) -> None:
    """Print a report and write it to `path` (its folder made if need be)."""
    text = "\n".join(lines)
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")

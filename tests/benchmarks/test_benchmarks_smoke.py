"""The benchmark harness still runs end to end (tiny and untimed: no wall-clock assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.floors import FLOORS
from benchmarks.operations import OPERATIONS

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_a_report_with_every_operation_and_floor(tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(report)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    text = report.read_text()
    rows = {line.split(" | ")[0].removeprefix("| ") for line in text.splitlines()}
    expected = {operation.label for operation in OPERATIONS} | {floor.label for floor in FLOORS}
    assert expected <= rows, f"rows missing from the report: {sorted(expected - rows)}"
    for heading in ("## Targets", "## Throughput", "## Physical floors", "## Machine"):
        assert heading in text
    assert "| django-redis |" in text  # a throughput row

"""Coherence across real OS processes (see coherence_worker.py for the other side)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer
from tiercache import TieredCache

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0  # seconds for any one answer from a worker


class Worker:
    """One `coherence_worker` process, spoken to line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.coherence_worker", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def hear(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            pytest.fail(f"worker {self.process.args} said nothing for {timeout} s")
        return answer

    def finish(self) -> int:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            return self.process.wait(TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.finish()


def test_write_in_one_process_reaches_the_l1_of_the_others(
    redis_url: str, workers: list[Worker]
) -> None:
    writer = TieredCache.from_url(redis_url)
    try:
        writer.set("shared", "v1")
        workers.extend(Worker("reader", redis_url, "shared") for _ in range(3))
        for worker in workers:
            assert worker.hear() == {"ready": True, "value": "v1", "held": True}
        writer.set("shared", "v2")
        for worker in workers:
            worker.tell("v2")
        answers = [worker.hear() for worker in workers]
    finally:
        writer.close()
    assert all(answer["took"] is not None for answer in answers)
    assert len({answer["instance"] for answer in answers}) == 3


@pytest.mark.timeout(90)
def test_eight_processes_of_sixteen_threads_compute_a_cold_key_once_with_the_lock(
    redis_url: str, workers: list[Worker]
) -> None:
    workers.extend(Worker("stampede", redis_url, "cold", "16", "lock") for _ in range(8))
    for worker in workers:
        assert worker.hear() == {"ready": True}
    for worker in workers:
        worker.tell("go")
    values = [worker.hear()["values"] for worker in workers]
    with redis.Redis.from_url(redis_url) as raw:
        calls = int(raw.get("loader-calls") or 0)
    assert calls == 1
    assert len({tuple(v) for v in values}) == 1
    assert values[0][0].startswith("computed-by-")


@pytest.mark.timeout(90)
def test_redis_sigkill_and_restart_under_load_leaks_no_exception_and_no_stale_value(
    private_redis: RedisServer, workers: list[Worker]
) -> None:
    checks = 20
    writer = TieredCache.from_url(private_redis.url)
    try:
        writer.set_many({f"check:{n}": f"before-{n}" for n in range(checks)})
        workers.extend(Worker("load", private_redis.url, str(checks)) for _ in range(2))
        for worker in workers:
            ready = worker.hear()
            assert ready["before"] == {f"check:{n}": f"before-{n}" for n in range(checks)}

        time.sleep(0.3)
        private_redis.kill()  # SIGKILL: every connection drops, nothing is persisted
        time.sleep(0.5)
        private_redis.start()  # same port, empty
        time.sleep(0.5)

        for worker in workers:
            worker.tell("stop")
        reports = [worker.hear() for worker in workers]
        for report in reports:
            assert report["escaped"] == []
            assert report["operations"] > 100
            assert report["failures"] > 0  # the outage was seen...
            assert report["stats"]["breaker_times_opened"] >= 1  # ...and failed fast

        # After recovery, what other processes write is what every process reads.
        after = {f"check:{n}": f"after-{n}" for n in range(checks)}
        deadline = time.monotonic() + 10
        while writer.set_many(after).value_or("failed") is not None:
            assert time.monotonic() < deadline, "Redis did not come back for the writer"
            time.sleep(0.05)
        for worker in workers:
            worker.tell(json.dumps(after))
        for worker in workers:
            took = worker.hear()["took"]
            assert all(seconds is not None for seconds in took.values()), took
    finally:
        writer.close()


def test_forked_children_of_a_used_cache_hear_each_other(
    redis_url: str, workers: list[Worker]
) -> None:
    workers.append(Worker("forker", redis_url))
    assert workers[0].hear() == {"codes": [0, 0]}

"""Throughput of get hits: 8 threads in this process, and 4 processes, for a fixed time."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from types import TracebackType
from typing import Any, Self

from benchmarks.subjects import VALUE_STR, Setup, Subject

__all__ = ["ProcessPool", "spin", "threaded_ops_per_second"]

_CHUNK = 64  # calls between two looks at the clock


def spin(get: Callable[[str], Any], key: str, seconds: float) -> tuple[int, float]:
    """Call `get(key)` for about `seconds`; return (calls, seconds really spent)."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(_CHUNK):
            get(key)
        calls += _CHUNK
        now = time.perf_counter()
        if now >= deadline:
            return calls, now - start


def threaded_ops_per_second(
    setup: Setup, subject: Subject, key: str, threads: int, seconds: float
) -> float:
    """Return the summed get-hit rate of `threads` threads, each with its own Django cache."""
    barrier = threading.Barrier(threads)
    results: list[tuple[int, float]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            get = setup.calls(subject).get
            get(key)  # fill this thread's L1 path, connect its pool
            barrier.wait()
            results.append(spin(get, key, seconds))
        except BaseException as error:  # re-raised in the main thread below
            errors.append(error)
            barrier.abort()

    workers = [threading.Thread(target=work, name=f"bench-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(calls / spent for calls, spent in results)


class ProcessPool:
    """Processes that each build their own caches once, then spin on request in lockstep."""

    def __init__(self, setup: Setup, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes)
        self._conns: list[Connection] = []
        self._processes: list[Any] = []
        for i in range(processes):
            conn, child = context.Pipe()
            process = context.Process(
                target=_serve, args=(setup, child, barrier), name=f"bench-reader-{i}", daemon=True
            )
            process.start()
            child.close()
            self._conns.append(conn)
            self._processes.append(process)
        for conn in self._conns:
            conn.recv()  # ready

    def ops_per_second(self, subject: Subject, key: str, seconds: float) -> float:
        """Return the summed get-hit rate of every process reading `key` through `subject`."""
        for conn in self._conns:
            conn.send((subject, key, seconds))
        replies = [conn.recv() for conn in self._conns]
        for reply in replies:
            if isinstance(reply, str):
                raise RuntimeError(f"a reader process failed: {reply}")
        return float(sum(calls / spent for calls, spent in replies))

    def close(self) -> None:
        """Stop every process."""
        for conn in self._conns:
            conn.send(None)
        for process in self._processes:
            process.join(10)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _serve(setup: Setup, conn: Connection, barrier: Barrier) -> None:
    setup.configure()
    conn.send("ready")
    while (request := conn.recv()) is not None:
        subject, key, seconds = request
        try:
            calls = setup.calls(subject)
            if not subject.shared:  # this process's own LocMemCache
                calls.set(key, VALUE_STR)
            get = calls.get
            get(key)
            barrier.wait()
            conn.send(spin(get, key, seconds))
        except Exception as error:  # reported to the parent, which stops the run
            barrier.abort()
            conn.send(f"{type(error).__name__}: {error}")

"""A separate OS process for tests/e2e/test_multiprocess_coherence.py.

Run as ``python -m tests.e2e.coherence_worker ROLE URL [ARGS]`` from the repository root.
It talks to the test through stdin (commands, one per line) and stdout (one JSON object
per line), never through the Redis under test, which the test kills and restarts.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from typing import Any

import redis
from returns.result import Failure

from tiercache import TieredCache, resilience_stats

DEADLINE = 10.0  # seconds: no loop here runs longer


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def command() -> str:
    return sys.stdin.readline().strip()


def wait_for(cache: TieredCache, key: str, wanted: str, timeout: float = DEADLINE) -> float | None:
    """Poll `key` until it reads `wanted`; return the seconds it took, None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if cache.get(key).value_or(None) == wanted:
            return time.monotonic() - started
        time.sleep(0.001)
    return None


def reader(url: str, key: str) -> None:
    """Hold `key` in L1, then report when another process's write reaches us."""
    cache = TieredCache.from_url(url, l1_ttl=60)
    first = cache.get(key).value_or(None)
    assert cache.l1 is not None
    say(ready=True, value=first, held=cache.l1.get("tc:" + key) == first)
    wanted = command()
    say(took=wait_for(cache, key, wanted), instance=cache.bus.instance_id)


def stampede(url: str, key: str, threads: int, lock: bool) -> None:
    """Ask for a cold key from many threads at once; count loader calls in Redis."""
    cache = TieredCache.from_url(url)
    counter = redis.Redis.from_url(url)

    def loader() -> str:
        counter.incr("loader-calls")
        time.sleep(0.3)
        return f"computed-by-{os.getpid()}"

    say(ready=True)
    assert command() == "go"
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def call(n: int) -> None:
        barrier.wait()
        results[n] = cache.get_or_set(key, loader, 60, lock=lock).value_or(None)

    workers = [threading.Thread(target=call, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE)
    say(values=sorted(set(map(str, results))))


def load(url: str, checks: int) -> None:
    """Run reads and writes from four threads while the test kills and restarts Redis."""
    cache = TieredCache.from_url(url, l1_ttl=60, connect_timeout=0.1, socket_timeout=0.2)
    before = {f"check:{n}": cache.get(f"check:{n}").value_or(None) for n in range(checks)}
    stop = threading.Event()
    escaped: list[str] = []
    done = [0, 0]  # operations, failures

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                key = f"load:{rng.randrange(50)}"
                choice = rng.randrange(5)
                if choice == 0:
                    result: Any = cache.set(key, str(rng.random()), 30)
                elif choice == 1:
                    result = cache.increment(key + ":n")
                elif choice == 2:
                    result = cache.delete(key)
                elif choice == 3:
                    result = cache.get_or_set(key, lambda: "loaded", 30)
                else:
                    result = cache.get(key)
                done[0] += 1
                done[1] += isinstance(result, Failure)
        except BaseException:  # what the test looks for: nothing may escape a cache call
            escaped.append(traceback.format_exc())

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    say(ready=True, before=before)
    assert command() == "stop"
    stop.set()
    for thread in threads:
        thread.join(DEADLINE)
    say(operations=done[0], failures=done[1], escaped=escaped, stats=resilience_stats(cache))
    expected = json.loads(command())
    took = {key: wait_for(cache, key, value, timeout=5) for key, value in expected.items()}
    say(took=took)


def forker(url: str) -> None:
    """Build a cache, use it, then fork two children that keep using the inherited one."""
    cache = TieredCache.from_url(url, l1_ttl=60)
    cache.set("sib", "old")
    parent_id = cache.bus.instance_id
    ready_read, ready_write = os.pipe()
    holder = os.fork()
    if holder == 0:  # holds "sib" in its L1, then must see its sibling's write
        assert cache.l1 is not None
        empty_after_fork = len(cache.l1) == 0
        cache.get("sib")  # starts this child's listener (whose subscribe refuses this fill)
        held = cache.get("sib").value_or(None) == "old" and cache.l1.get("tc:sib") == "old"
        os.write(ready_write, b"x")
        took = wait_for(cache, "sib", "from-sibling", timeout=5)
        fresh_id = cache.bus.instance_id != parent_id
        os._exit(0 if empty_after_fork and held and took is not None and fresh_id else 1)
    os.read(ready_read, 1)
    writer = os.fork()
    if writer == 0:
        ok = cache.set("sib", "from-sibling").value_or("failed") is None
        os._exit(0 if ok and cache.bus.instance_id != parent_id else 1)
    codes = [os.waitpid(pid, 0)[1] for pid in (holder, writer)]
    say(codes=[os.waitstatus_to_exitcode(code) for code in codes])


def main() -> None:
    role, url, *args = sys.argv[1:]
    if role == "reader":
        reader(url, args[0])
    elif role == "stampede":
        stampede(url, args[0], int(args[1]), args[2] == "lock")
    elif role == "load":
        load(url, int(args[0]))
    elif role == "forker":
        forker(url)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()

"""A small fleet of real processes under tracking: messages reach holders only.

Eight forked workers each hold one shared key and one key of their own. Another program
writes the shared key, one worker's own key and keys nobody holds; every worker then
reports how many invalidations it heard. The test asserts counts, not times.
"""

from __future__ import annotations

import os
import time

import redis

from tiercache import TieredCache

WORKERS = 8
DEADLINE = 10.0  # seconds a worker waits for what it must hear


def _worker(url: str, index: int, start: int, report: int) -> None:
    cache = TieredCache.from_url(url, l1_ttl=None)
    assert cache.l1 is not None
    mine = (f"tc:own{index}", "tc:shared")
    for _ in range(100):
        cache.get(f"own{index}")
        cache.get("shared")
        if all(cache.l1.get(key) == "old" for key in mine):
            break
    os.write(report, b"r")
    os.read(start, 1)  # the writes are done
    expected_gone = ["tc:shared"] + ([f"tc:own{index}"] if index == 3 else [])
    deadline = time.monotonic() + DEADLINE
    while any(cache.l1.get(key) == "old" for key in expected_gone):
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    time.sleep(0.2)  # anything wrongly sent would arrive by now
    os.write(report, bytes([cache.bus.messages]))
    os._exit(0)


def test_only_holders_hear_a_write_one_message_each(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    raw.set("tc:shared", "old")
    for index in range(WORKERS):
        raw.set(f"tc:own{index}", "old")
    children: list[tuple[int, int, int]] = []
    try:
        for index in range(WORKERS):
            start_r, start_w = os.pipe()
            report_r, report_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                _worker(redis_url, index, start_r, report_w)
            children.append((pid, start_w, report_r))
        for _, _, report in children:
            assert os.read(report, 1) == b"r"
        raw.set("tc:shared", "new")
        raw.set("tc:own3", "new")
        for index in range(100):
            raw.set(f"tc:cold{index}", "v")  # nobody holds these: nobody hears them
        for _, start, _ in children:
            os.write(start, b"g")
        heard = [os.read(report, 1)[0] for _, _, report in children]
    finally:
        for pid, _, _ in children:
            os.waitpid(pid, 0)
        raw.close()
    assert heard == [2 if index == 3 else 1 for index in range(WORKERS)]

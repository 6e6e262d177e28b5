"""Counts made outside requests, one shard per thread: none lost, none kept past its thread."""

from __future__ import annotations

import threading

from django_tiercache.metrics import AliasMetrics


def test_the_shards_of_ended_threads_are_folded_and_dropped() -> None:
    metrics = AliasMetrics("default")

    def count() -> None:
        metrics.record_hit("user")
        metrics.record_miss("user")

    for _ in range(50):  # a thread per task, as some servers and job runners do
        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
    stats = metrics.get_stats("user")
    assert (stats["hits"], stats["misses"]) == (50, 50)
    assert len(metrics._shards) == 0  # every thread that counted has ended
    metrics.record_hit("user")  # this (live) thread keeps its shard
    assert metrics.get_stats("user")["hits"] == 51
    assert len(metrics._shards) == 1

"""Figures are summed over worker processes: two real processes push, this one reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

WORKER = Path(__file__).with_name("metrics_worker.py")


def _run_workers(redis_url: str, *requests: int) -> list[dict[str, Any]]:
    env = {**os.environ, "TIERCACHE_TEST_REDIS_URL": redis_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for count in requests
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    return results


@pytest.mark.django_db
def test_the_stats_page_sums_the_counters_of_every_process(
    redis_url: str, admin_client: Client
) -> None:
    first, second = _run_workers(redis_url, 3, 5)
    assert first["counts"] != second["counts"], "each worker counts its own requests"

    (report,) = admin_client.get("/admin/django_tiercache/cachestats/").context["reports"]

    assert report.site_wide
    assert report.processes == 2
    for namespace in ("user", "provider", "accounts"):
        for counter in ("l1_hits", "l2_hits", "misses", "errors", "total_requests"):
            expected = first["stats"][namespace][counter] + second["stats"][namespace][counter]
            assert report.namespaces[namespace][counter] == expected, (namespace, counter)
    assert report.namespaces["provider"]["total_requests"] == 8
    assert report.namespaces["user"]["total_requests"] == 16
    assert report.namespaces["accounts"]["misses"] == 2
    (view,) = report.views
    assert (view.view, view.requests) == ("user-and-provider", 8)
    assert list(view.namespaces) == ["provider", "user"]


def test_the_command_sums_every_process_too(redis_url: str) -> None:
    first, second = _run_workers(redis_url, 2, 4)
    expected = Counter(first["counts"]) + Counter(second["counts"])

    out = StringIO()
    call_command("tiercache", "stats", "--json", stdout=out)

    (report,) = json.loads(out.getvalue())
    assert report["processes"] == 2
    assert report["namespaces"]["provider"]["total_requests"] == 6
    assert report["namespaces"]["user"]["misses"] == expected["ns|user|misses"]


def test_this_processes_unpushed_deltas_are_added_to_the_redis_sums(redis_url: str) -> None:
    (worker,) = _run_workers(redis_url, 2)
    from django.core.cache import cache

    cache.get("provider:local-only")  # counted here, not pushed yet

    out = StringIO()
    call_command("tiercache", "stats", "--json", stdout=out)

    (report,) = json.loads(out.getvalue())
    assert report["namespaces"]["provider"]["misses"] == worker["stats"]["provider"]["misses"] + 1

"""`manage.py tiercache stats|ping|flush|reset`."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from django_tiercache.metrics import metrics_for
from tests.redis_server import RedisServer


def _run(*args: str) -> str:
    out = StringIO()
    call_command("tiercache", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_stats_lists_each_namespace_with_its_figures() -> None:
    cache.set("user:1", "Ada")
    cache.get("user:1")
    cache.get("provider:1")

    out = _run("stats")

    assert "Cache 'default'" in out
    assert "Redis: reachable" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("    ")}
    assert lines["user"][-3:] == ["0", "1", "100.0%"]
    assert lines["provider"][3] == "1"  # misses


def test_stats_as_json_has_the_pages_figures() -> None:
    cache.get("accounts:3")

    (report,) = json.loads(_run("stats", "--json"))

    assert report["alias"] == "default"
    assert report["site_wide"] is True
    assert report["namespaces"]["accounts"]["misses"] == 1
    assert report["redis"]["reachable"] is True


def test_ping_answers_with_the_latency() -> None:
    assert _run("ping").startswith("default: PONG in ")


def test_ping_fails_when_redis_is_unreachable(use_caches: Any, private_redis: RedisServer) -> None:
    use_caches(private_redis.url)
    private_redis.kill()

    with pytest.raises(CommandError, match="Redis unreachable for: default"):
        _run("ping")


def test_stats_says_when_the_figures_are_this_processes_only(
    use_caches: Any, private_redis: RedisServer
) -> None:
    use_caches(private_redis.url)
    cache.get("user:1")
    private_redis.kill()

    out = _run("stats")

    assert "Redis: unreachable" in out
    assert "Figures of this process only" in out


def test_flush_deletes_the_namespace_only() -> None:
    cache.set("user:1", "Ada")
    cache.set("user:2", "Grace")
    cache.set("provider:1", "Acme")

    out = _run("flush", "--namespace", "user")

    assert out.strip() == "default: flushed namespace 'user' (2 keys deleted)"
    assert cache.get("user:1") is None
    assert cache.get("provider:1") == "Acme"


def test_flush_needs_a_namespace() -> None:
    with pytest.raises(CommandError):
        _run("flush")


def test_reset_zeroes_the_metrics() -> None:
    cache.get("user:1")

    assert _run("reset").strip() == "default: metrics reset in every process"
    assert metrics_for("default").get_all_stats() == {}


def test_an_unknown_alias_is_refused() -> None:
    with pytest.raises(CommandError, match="Not a tiered cache alias: nope"):
        _run("stats", "--alias", "nope")


def test_a_bad_location_list_is_refused_by_the_metrics_as_by_the_checks(use_caches: Any) -> None:
    # One parser for every reader of the settings: the metrics never open a Redis
    # connection for a LOCATION the system checks reject (django-redis's lists of URLs
    # are accepted, but every entry must be one).
    use_caches(["redis://127.0.0.1:6379/0", "127.0.0.1:6380"])

    assert metrics_for("default").shares_counts is False

"""`manage.py tiercache stats|ping|flush|reset`."""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from django_tiercache.metrics import metrics_for
from tests.redis_server import RedisServer
from tests.redis_topology import RedisClusterServers


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


def test_ping_asks_every_primary_of_a_cluster(
    use_caches: Any, redis_cluster: RedisClusterServers
) -> None:
    use_caches(redis_cluster.seed_url, CLUSTER=True)
    out = _run("ping")
    assert out.startswith("default: PONG in ")
    nodes = re.findall(r"^  (primary|replica) (127\.0\.0\.1:\d+): PONG in ", out, re.MULTILINE)
    assert [role for role, _ in nodes] == ["primary"] * 3 + ["replica"] * 3
    paused = redis_cluster.primaries()[-1]
    errors = StringIO()
    with redis.Redis(port=paused.port) as primary:
        primary.execute_command("CLIENT", "PAUSE", 2000, "ALL")  # answers nobody for 2 s
        try:
            with pytest.raises(CommandError, match="Redis unreachable for: default"):
                call_command("tiercache", "ping", stdout=StringIO(), stderr=errors)
        finally:
            primary.execute_command("CLIENT", "UNPAUSE")
    assert f"  primary 127.0.0.1:{paused.port}: no answer (" in errors.getvalue()


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

    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        metrics_for("default")  # the metrics live in the backbone, built from parsed options


# -- inspect ---------------------------------------------------------------------------


def _inspect(*args: str) -> list[str]:
    return _run("inspect", *args).splitlines()


def test_inspect_shows_both_tiers_copies_without_the_value(redis_url: str) -> None:
    cache.set("user:1", {"name": "Ada", "secret": "s3cret"}, 300)

    out = _inspect("user:1")

    assert out[0] == "Cache 'default', key 'user:1'"
    assert out[1] == "  Redis key: 'dj::1:user:1'"
    # L1 keeps its copy at most L1_TTL (60 s); Redis keeps it for the timeout.
    assert re.fullmatch(
        r"  L1 \(this process\): dict, \d+ bytes, expires in 60 s, stored [\d.]+ s ago", out[2]
    )
    assert re.fullmatch(
        r"  Redis: string, encoding raw, \d+ bytes stored, memory usage \d+ bytes, "
        r"TTL (300|29\d\.\d+) s",
        out[3],
    )
    assert out[4] == "    value type: dict"
    assert not any("s3cret" in line for line in out)


def test_inspect_prints_the_value_only_when_asked() -> None:
    cache.set("user:1", {"secret": "s3cret"})

    out = "\n".join(_inspect("user:1", "--show-value"))

    assert "    value: {'secret': 's3cret'}" in out
    assert out.count("s3cret") == 2  # L1's copy and Redis's


def test_inspect_of_a_key_held_nowhere_says_so() -> None:
    out = _inspect("user:404")

    assert out[2:] == ["  L1 (this process): not held", "  Redis: no such key"]


def test_inspect_reports_a_copy_that_does_not_verify_without_unpickling_it(
    redis_url: str,
) -> None:
    cache.set("perms:alice", ["admin"])
    cache.set("perms:bob", ["reader"])
    with redis.Redis.from_url(redis_url) as raw:
        raw.set("dj::1:perms:bob", raw.get("dj::1:perms:alice"))
    assert cache.l1 is not None
    cache.l1.clear()

    out = _inspect("perms:bob", "--show-value")

    assert out[2] == "  L1 (this process): not held"
    assert out[4].startswith("    value: unreadable (value in Redis has no valid signature")
    assert "admin" not in "\n".join(out)


def test_inspect_says_when_redis_cannot_be_asked(
    use_caches: Any, private_redis: RedisServer
) -> None:
    use_caches(private_redis.url)
    cache.set("user:1", "Ada")
    private_redis.kill()

    out = _inspect("user:1")

    assert out[2].startswith("  L1 (this process): str, ")
    assert out[3].startswith("  Redis: Redis is unreachable")

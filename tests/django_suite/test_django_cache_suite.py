"""Django's own cache test suite, run against Django's RedisCache and against ours.

Each backend runs in its own subprocess (tests/django_suite/run_django_cache_suite.py
configures Django settings the way Django's tests/runtests.py does, which must not
clash with this pytest process).  Django's ``tests/`` come from the sdist of the
installed Django version, cached under ``.cache/django-tests/`` (fetched from PyPI
on first use).

Requirement: wherever Django's built-in Redis backend passes a test of
``cache.tests.RedisCacheTests``, ``django_tiercache.backend.TieredCache`` passes it
too - except the short list of tests of Django's RedisCache internals,
``BACKEND_INTERNAL_TESTS`` (reasons in docs/django-suite.md).

Both summary lines are printed (see them with ``pytest -s``) and written to
``.cache/django-suite-report.txt``.

Environment overrides for the candidate run (e.g. to try a backend variant):
``TIERCACHE_DJANGO_SUITE_BACKEND`` (dotted path), ``TIERCACHE_DJANGO_SUITE_OPTIONS``
(JSON object), ``TIERCACHE_DJANGO_SUITE_EXTRA_APPS`` (comma-separated; default
``django_tiercache``; empty for none).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

from tests.django_suite.run_django_cache_suite import (
    BACKEND_INTERNAL_TESTS,
    DEFAULT_CACHE_DIR,
    EXPECTED_FAILURE,
    PASSED,
    SKIPPED,
    BackendSpec,
    Comparison,
    SuiteProcess,
    SuiteResult,
    builtin_spec,
    candidate_spec,
    ensure_django_tests,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from tests.redis_server import RedisServer
    from tests.redis_topology import RedisClusterServers, RedisSentinelServers

DEFAULT_CANDIDATE = "django_tiercache.backend.TieredCache"
CANDIDATE_BACKEND = os.environ.get("TIERCACHE_DJANGO_SUITE_BACKEND", DEFAULT_CANDIDATE)
CANDIDATE_LABEL = (
    "tiercache" if CANDIDATE_BACKEND == DEFAULT_CANDIDATE else CANDIDATE_BACKEND.rpartition(".")[2]
)
CANDIDATE_OPTIONS: dict[str, object] = json.loads(
    os.environ.get("TIERCACHE_DJANGO_SUITE_OPTIONS", "{}")
)
CANDIDATE_EXTRA_APPS = tuple(
    app
    for app in os.environ.get("TIERCACHE_DJANGO_SUITE_EXTRA_APPS", "django_tiercache").split(",")
    if app.strip()
)
# Databases on the session's Redis server; the suite FLUSHDBs them.
BUILTIN_DB = 11
CANDIDATE_DB = 12
REPORT_PATH = DEFAULT_CACHE_DIR / "django-suite-report.txt"
SUITE_TIMEOUT = 240.0

# One suite run is ~15 s (it sleeps in expiry tests); a failing backend adds retries.
pytestmark = pytest.mark.timeout(2 * SUITE_TIMEOUT + 60)


def _write_report(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print("\n" + text, end="")
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(text, encoding="utf-8")


def _assert_no_regressions(
    comparison: Comparison, proc: subprocess.CompletedProcess[str], what: str
) -> None:
    candidate = comparison.candidate
    details = "\n\n".join(
        f"--- {name} ---\n{candidate.tracebacks.get(name, candidate.messages.get(name, ''))}"
        for name in comparison.regressions
    )
    assert not comparison.regressions, (
        f"{len(comparison.regressions)} Django cache tests pass on Django's RedisCache but not "
        f"on {what}: {comparison.regressions}\n\n{details}\n\n"
        f"--- suite stderr (tail) ---\n{proc.stderr[-1500:]}"
    )


def _server_url(redis_server: RedisServer) -> str:
    if not redis_server.is_running():  # another test may have stopped the shared server
        redis_server.restart()
    return redis_server.url


@pytest.fixture(scope="module")
def suites(
    redis_server: RedisServer,
    _cluster_servers: RedisClusterServers,
    _sentinel_servers: RedisSentinelServers,
) -> Iterator[dict[str, SuiteProcess]]:
    """Django's suite for the built-in backend and for ours on every topology, at once.

    A run mostly sleeps in Django's expiry tests (~15 s each), so the four overlap: the
    module takes about one run's time, not four. The tests here ask for no per-test
    topology fixture, whose flush would reach a run still going; this one empties them
    once, before any run starts, and ends any run no test waited for.
    """
    ensure_django_tests(quiet=True)  # fetch once, before any subprocess
    url = _server_url(redis_server)
    _cluster_servers.heal()
    _cluster_servers.flushall()
    _sentinel_servers.heal()
    _sentinel_servers.flushall()

    def candidate(location: str, db: int, label: str, **options: object) -> BackendSpec:
        return candidate_spec(
            location,
            db,
            label=label,
            backend=CANDIDATE_BACKEND,
            options={**CANDIDATE_OPTIONS, **options},
            extra_apps=CANDIDATE_EXTRA_APPS,
        )

    sentinels = [[host, port] for host, port in _sentinel_servers.sentinels]
    started = {
        "builtin": SuiteProcess(builtin_spec(url, BUILTIN_DB)),
        "standalone": SuiteProcess(candidate(url, CANDIDATE_DB, CANDIDATE_LABEL)),
        # A cluster has database 0 only. The fixtures were emptied above: the runner's
        # own FLUSHDB would reach one cluster node, and cannot resolve a Sentinel service.
        "cluster": SuiteProcess(
            candidate(_cluster_servers.seed_url, 0, f"{CANDIDATE_LABEL}-cluster", CLUSTER=True),
            flush=False,
        ),
        "sentinel": SuiteProcess(
            # redis://<service>/0: the host names the Sentinel service
            candidate(_sentinel_servers.url, 0, f"{CANDIDATE_LABEL}-sentinel", SENTINELS=sentinels),
            flush=False,
        ),
    }
    yield started
    for run in started.values():
        run.stop()


@pytest.fixture(scope="module")
def builtin_result(suites: dict[str, SuiteProcess]) -> SuiteResult:
    """Django's suite against django.core.cache.backends.redis.RedisCache."""
    result, _ = suites["builtin"].wait(SUITE_TIMEOUT)
    return result


def test_builtin_redis_backend_passes_django_suite(builtin_result: SuiteResult) -> None:
    _write_report([builtin_result.summary_line()])
    assert builtin_result.fatal is None, builtin_result.fatal
    broken = {name: builtin_result.messages.get(name, "") for name in builtin_result.not_passing}
    assert not broken, f"Django's own RedisCache fails its suite here: {broken}"
    # Guard against a vacuous pass (e.g. the whole class being skipped).
    counts = builtin_result.counts
    assert counts[PASSED] > counts[SKIPPED] + counts[EXPECTED_FAILURE]
    assert set(BACKEND_INTERNAL_TESTS) <= set(builtin_result.tests_with(PASSED)), (
        "BACKEND_INTERNAL_TESTS names a test this Django version does not have or pass"
    )


def test_tiercache_backend_passes_what_builtin_passes(
    builtin_result: SuiteResult, suites: dict[str, SuiteProcess]
) -> None:
    candidate, proc = suites["standalone"].wait(SUITE_TIMEOUT)
    if candidate.fatal is not None:
        _write_report([builtin_result.summary_line(), candidate.summary_line()])
        if candidate.fatal.get("kind") == "backend-module-missing":
            pytest.skip(f"{CANDIDATE_BACKEND} cannot be imported yet: {candidate.fatal['message']}")
        pytest.fail(
            f"{CANDIDATE_BACKEND} failed to import:\n{candidate.fatal.get('traceback', '')}"
        )

    comparison = Comparison(builtin_result, candidate)
    _write_report(comparison.report_lines())
    assert not comparison.baseline_broken, "see test_builtin_redis_backend_passes_django_suite"
    _assert_no_regressions(comparison, proc, CANDIDATE_BACKEND)


@pytest.mark.parametrize(
    ("run", "where"), [("cluster", "on a Redis Cluster"), ("sentinel", "behind Redis Sentinel")]
)
def test_tiercache_backend_on_each_topology_passes_what_builtin_passes(
    builtin_result: SuiteResult, suites: dict[str, SuiteProcess], run: str, where: str
) -> None:
    candidate, proc = suites[run].wait(SUITE_TIMEOUT)
    assert candidate.fatal is None, candidate.fatal.get("traceback", candidate.fatal)
    comparison = Comparison(builtin_result, candidate)
    lines = comparison.report_lines()
    print("\n" + "\n".join(lines))
    _assert_no_regressions(comparison, proc, f"{CANDIDATE_BACKEND} {where}")

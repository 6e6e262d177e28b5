"""Run django-redis's own test suite (its ``sqlite`` settings variant) against our backend.

django-redis's ``tests/`` ship in its sdist. On first use ``pip download`` fetches the
sdist of ``DJANGO_REDIS_VERSION`` from PyPI into ``.cache/`` and extracts it (reused
later). Each run copies ``tests/`` into a scratch directory and patches only
``tests/settings/sqlite.py``: the BACKEND of every cache becomes ours and port 6379
becomes the test's own redis-server. Everything else (OPTIONS with ``CLIENT_CLASS``,
LOCATION lists, the tests themselves) is django-redis's, unchanged. The suite runs in a
subprocess with pytest (``-k "not sqlite_"``: the ``sqlite`` variant plus the tests that
take no settings), its ``django_redis`` package first on the path, and a JUnit report
is read back.

Standard library only at import time; run it by hand with
``python -m tests.django_redis_suite.run_django_redis_suite redis://127.0.0.1:PORT`` (from the repository root).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from tests.django_suite.run_django_cache_suite import FetchError, download_sdist

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CACHE_DIR: Final = REPO_ROOT / ".cache"
DJANGO_REDIS_VERSION: Final = "7.0.0"
BACKEND: Final = "django_tiercache.backend.TieredCache"
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"

_DATA_STRUCTURES = (
    "data-structure helper (sets, sorted sets, hashes): out of scope, an L1 cannot hold "
    "them coherently at no cost; reach them with cache.get_client()"
)
_CLIENT_INTERNALS = "django-redis `cache.client` internals"
_HASH_TESTS = ("hset", "hdel", "hlen", "hkeys", "hexists", "hash_version_support")
_SET_TESTS = [
    "sadd",
    "scard",
    "sdiff",
    "sdiffstore",
    "sdiffstore_with_keys_version",
    "sdiffstore_with_different_keys_versions_without_initial_set_in_version",
    "sdiffstore_with_different_keys_versions_with_initial_set_in_version",
    "sinter",
    "interstore",
    "sismember",
    "smove",
    "spop_default_count",
    "spop",
    "srandmember_default_count",
    "srandmember",
    "srem",
    "sscan",
    "sscan_with_match",
    "sscan_iter",
    "sscan_iter_with_match",
    "smismember",
    "sunion",
    "sunionstore",
]
_SORTED_SET_TESTS = [
    "zadd_basic",
    "zadd_with_nx",
    "zadd_with_xx",
    "zadd_with_ch",
    "zcard",
    "zcount",
    "zincrby",
    "zpopmax",
    "zpopmin",
    "zrange_basic",
    "zrange_withscores",
    "zrange_desc",
    "zrangebyscore",
    "zrangebyscore_withscores",
    "zrangebyscore_pagination",
    "zrank",
    "zrem",
    "zremrangebyscore",
    "zrevrange",
    "zrevrange_withscores",
    "zrevrangebyscore",
    "zscore",
    "sorted_set_serialization",
    "sorted_set_version_support",
    "sorted_set_float_scores",
    "sorted_set_negative_scores",
    "zpopmin_empty_set",
    "zpopmax_empty_set",
]
_BACKEND_TESTS = "test_backend.TestDjangoRedisCache::test_"

#: Every test of the run that does not pass, and why (docs/django-redis-suite.md).
KNOWN_FAILURES: Final[Mapping[str, str]] = {
    **{_BACKEND_TESTS + name: _DATA_STRUCTURES for name in (*_HASH_TESTS, *_SET_TESTS)},
    _BACKEND_TESTS + "hash_key_structure_in_redis": _DATA_STRUCTURES,
    **{
        f"test_backend_sorted_sets.TestSortedSetOperations::test_{name}": _DATA_STRUCTURES
        for name in _SORTED_SET_TESTS
    },
    _BACKEND_TESTS + "set_call_empty_pipeline": (
        f"{_CLIENT_INTERNALS}: passes a redis-py pipeline as `client=` and mocks its `set` "
        "to compare django-redis's own key and value encoding"
    ),
    _BACKEND_TESTS + "delete_pattern_with_custom_count": (
        f"{_CLIENT_INTERNALS}: patches django_redis.cache.RedisCache.client and asserts "
        "calls on it (our delete_pattern takes itersize too)"
    ),
    _BACKEND_TESTS + "delete_pattern_with_settings_default_scan_count": (
        f"{_CLIENT_INTERNALS}: patches django_redis.cache.RedisCache.client and expects "
        "settings.DJANGO_REDIS_SCAN_ITERSIZE to reach it"
    ),
    _BACKEND_TESTS + "close_with_signal_parameter": (
        f"{_CLIENT_INTERNALS}: patches django_redis.cache.RedisCache.client and expects "
        "close() to call it (ours keeps the pooled connections)"
    ),
    _BACKEND_TESTS + "primary_replica_switching": (
        f"{_CLIENT_INTERNALS}: sets DefaultClient._server/_clients and calls "
        "get_client(write=False) for a replica; we read from the primary only"
    ),
    _BACKEND_TESTS + "primary_replica_switching_with_index": (
        f"{_CLIENT_INTERNALS}: DefaultClient.get_client_with_index() and replica selection"
    ),
    **{
        f"test_client.TestClientClose::test_{name}": (
            f"{_CLIENT_INTERNALS}: DefaultClient.set/_options/connection_factory.disconnect"
        )
        for name in (
            "close_client_disconnect_default",
            "close_disconnect_settings",
            "close_disconnect_settings_cache",
            "close_disconnect_client_options",
        )
    },
    _BACKEND_TESTS + "delete_many": (
        "by design: delete_many() returns None, as Django's cache API says (django-redis "
        "returns the number deleted)"
    ),
    _BACKEND_TESTS + "delete_many_generator": (
        "by design: delete_many() returns None, as Django's cache API says"
    ),
    "test_cache_options::test_get_django_omit_exceptions_priority_2": (
        "by design: expects IGNORE_EXCEPTIONS=False to raise redis's ConnectionError; "
        "tiercache always fails open"
    ),
    "test_cache_options::test_custom_key_function": (
        "by design: asserts the raw Redis key names; ours start with REDIS_PREFIX ('dj:' by "
        "default) so that django-redis and tiercache processes can share a Redis during a "
        "rolling migration (REDIS_PREFIX='' gives django-redis's names)"
    ),
}


def ensure_sdist(version: str = DJANGO_REDIS_VERSION, cache_dir: Path = CACHE_DIR) -> Path:
    """Return the extracted sdist of django-redis `version`, fetching it on first use."""
    root = cache_dir / "django-redis" / version
    if (root / ".complete").is_file():
        return root
    downloads = cache_dir / "django-redis-sdist"
    archive_path = download_sdist(version, downloads, quiet=True, project="django-redis")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=downloads))
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        (top,) = staging.iterdir()
        if not (top / "tests" / "settings" / "sqlite.py").is_file():
            raise FetchError(f"{archive_path.name} has no tests/settings/sqlite.py")
        (top / ".complete").write_text(archive_path.name + "\n", encoding="utf-8")
        root.parent.mkdir(parents=True, exist_ok=True)
        if not root.exists():
            top.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def patch_settings(text: str, port: int, backend: str = BACKEND) -> str:
    """Return django-redis's settings with our BACKEND and `port` for 6379; nothing else."""
    patched = text.replace('"django_redis.cache.RedisCache"', f'"{backend}"')
    return re.sub(r":6379\b", f":{port}", patched)


@dataclass
class SuiteResult:
    """Per-test outcomes of one run, keyed `module.Class::test` (the [sqlite] id dropped)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> Counter[str]:
        """Return how many tests had each outcome."""
        return Counter(self.outcomes.values())

    def not_passing(self) -> list[str]:
        """Return the tests that failed or errored."""
        return sorted(name for name, kind in self.outcomes.items() if kind in (FAILED, ERROR))

    def summary_line(self) -> str:
        """Return e.g. 'django-redis suite: 125 passed, 72 failed, 0 error, 0 skipped'."""
        counts = self.counts
        return "django-redis suite: " + ", ".join(
            f"{counts[kind]} {kind}" for kind in (PASSED, FAILED, ERROR, SKIPPED)
        )


def _read_junit(path: Path) -> SuiteResult:
    result = SuiteResult()
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        test = f"{classname}::{name.removesuffix('[sqlite]')}"
        kind = PASSED
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = {"failure": FAILED, "error": ERROR, "skipped": SKIPPED}[child.tag]
                result.messages[test] = (child.get("message") or "")[:500]
        if result.outcomes.get(test) in (FAILED, ERROR):
            continue  # an error in teardown after a failure: keep the failure
        result.outcomes[test] = kind
    return result


def run_suite(redis_url: str, *, timeout: float = 300.0) -> tuple[SuiteResult, str]:
    """Run the suite against our backend on the Redis at `redis_url`; return (result, output)."""
    sdist = ensure_sdist()
    port = urlsplit(redis_url).port
    assert port is not None, redis_url
    with tempfile.TemporaryDirectory(prefix="django-redis-suite-") as scratch:
        tests = Path(scratch) / "tests"
        shutil.copytree(sdist / "tests", tests)
        settings_file = tests / "settings" / "sqlite.py"
        settings_file.write_text(patch_settings(settings_file.read_text(), port))
        report = Path(scratch) / "junit.xml"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(sdist), str(REPO_ROOT)])
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:django",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(tests),
            "-o",
            "addopts=",
            "-k",
            "not sqlite_",
            f"--junitxml={report}",
            ".",
        ]
        proc = subprocess.run(
            cmd, cwd=tests, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if not report.is_file():
            raise RuntimeError(f"the suite did not run:\n{proc.stdout[-3000:]}\n{proc.stderr}")
        return _read_junit(report), proc.stdout


if __name__ == "__main__":
    outcome, output = run_suite(sys.argv[1])
    print(output[-3000:])
    print(outcome.summary_line())
    for test in outcome.not_passing():
        print(f"  {test}: {KNOWN_FAILURES.get(test, 'UNEXPECTED: ' + outcome.messages[test])}")

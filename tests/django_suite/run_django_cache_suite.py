"""Run Django's own cache test suite against a configurable cache backend.

Django's ``tests/`` directory is not shipped in the wheel, so it is taken from
the sdist of exactly the installed Django version (``pip download``), and only
``tests/`` is extracted into ``.cache/django-tests/<version>/`` (reused on later
runs).  The suite is then run the way Django's ``tests/runtests.py`` runs
``cache.tests.RedisCacheTests`` (the ``BaseCacheTests`` family as applied to the
built-in Redis backend): the same settings, the same installed test apps,
``DiscoverRunner`` with ``--parallel 1``, and the same warning filters.  The only
change is that the test class's ``CACHES`` override is rebuilt, with Django's own
``caches_setting_for_tests(base=..., exclude=redis_excluded_caches)``, around the
backend under test (BACKEND/LOCATION/OPTIONS given on the command line).

Sub-commands (run with the project's interpreter, from any directory)::

    run_django_cache_suite.py fetch
    run_django_cache_suite.py run --label redis-builtin \
        --backend django.core.cache.backends.redis.RedisCache \
        --location redis://127.0.0.1:6379 --options '{"db": 11}'
    run_django_cache_suite.py run --label tiercache \
        --backend django_tiercache.backend.TieredCache \
        --location redis://127.0.0.1:6379/12 --options '{}' --extra-app django_tiercache
    run_django_cache_suite.py compare --redis redis://127.0.0.1:6379 \
        --candidate-backend django_tiercache.backend.TieredCache --candidate-options '{}'

``run`` executes one backend in this process and prints one machine-readable
line (prefixed ``DJANGO_SUITE_RESULT``) plus one human line
(``django-suite <label>: N passed, ...``).  ``compare`` runs the built-in backend
and a candidate, each in its own subprocess, and checks that every test the
built-in passes also passes for the candidate, except the short list of tests
in ``BACKEND_INTERNAL_TESTS`` (see docs/django-suite.md).

WARNING: the suite FLUSHDBs the Redis database it is pointed at (Django's
RedisCache.clear() is FLUSHDB, and this runner also flushes it before the run).
Point it at a throw-away database.

This module only imports the standard library at import time, so the pytest
wrapper can import it without configuring Django.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import unittest
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeAlias

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR: Final = REPO_ROOT / ".cache"
BUILTIN_BACKEND: Final = "django.core.cache.backends.redis.RedisCache"
BUILTIN_LABEL: Final = "redis-builtin"
RESULT_PREFIX: Final = "DJANGO_SUITE_RESULT "
SUITE_ID: Final = "cache.tests.RedisCacheTests"

# Exit codes of the ``run`` sub-command.
EXIT_OK: Final = 0
EXIT_TESTS_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_BACKEND_MISSING: Final = 3  # the backend's module does not exist
EXIT_BACKEND_BROKEN: Final = 4  # the backend's module exists but fails to import
EXIT_CRASHED: Final = 5  # the harness itself failed (e.g. system checks)

# Tests of ``cache.tests.RedisCacheTests`` that exercise private internals of
# Django's ``RedisCache`` / ``RedisCacheClient`` (or redis-py connection pool
# kwargs passed through Django's lower-case OPTIONS) rather than the cache API.
# A different backend is not required to pass them.  Everything else in the
# class (the whole ``BaseCacheTests`` family plus test_get_backend_timeout_method
# and the redis.ResponseError expectation of test_incr/test_decr) is contract.
BACKEND_INTERNAL_TESTS: Final[Mapping[str, str]] = {
    "test_cache_client_class": (
        "asserts cache._class is django's RedisCacheClient and cache._cache is an "
        "instance of it (private attributes of django's RedisCache)"
    ),
    "test_get_client": (
        "calls cache._cache.get_client() (private RedisCacheClient API) and expects a redis.Redis"
    ),
    "test_get_connection_pool": (
        "calls cache._cache._get_connection_pool(write=...) (private RedisCacheClient API)"
    ),
    "test_get_connection_pool_index": (
        "calls cache._cache._get_connection_pool_index() and reads cache._cache._servers "
        "(django's read-replica selection, private)"
    ),
    "test_incr_write_connection": (
        "mock.patches django.core.cache.backends.redis.RedisCacheClient.get_client and "
        "asserts incr() called it with write=True; another backend never calls it"
    ),
    "test_serializer_dumps": (
        "calls cache._cache._serializer.dumps() (django's RedisSerializer, private)"
    ),
    "test_redis_pool_options": (
        "reads cache._cache._get_connection_pool().connection_kwargs for redis-py pool "
        "kwargs given as lower-case OPTIONS (db, socket_timeout, retry_on_timeout); its "
        "method-level CACHES override is built at import time from the settings entry "
        "whose BACKEND is django's RedisCache, so for any other backend it configures a "
        "cache without BACKEND"
    ),
}

# What django's tests/runtests.py installs (ALWAYS_INSTALLED_APPS, ALWAYS_MIDDLEWARE).
ALWAYS_INSTALLED_APPS: Final = (
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sites",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.staticfiles",
)
ALWAYS_MIDDLEWARE: Final = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)

JSONDict: TypeAlias = dict[str, Any]
ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]

# Per-test outcomes, ordered by severity (a test with several results - e.g.
# failing subtests - keeps the most severe one).
PASSED: Final = "passed"
FAILED: Final = "failed"
ERROR: Final = "error"
SKIPPED: Final = "skipped"
EXPECTED_FAILURE: Final = "expected_failure"
UNEXPECTED_SUCCESS: Final = "unexpected_success"
_SEVERITY: Final[Mapping[str, int]] = {
    SKIPPED: 0,
    EXPECTED_FAILURE: 1,
    PASSED: 2,
    UNEXPECTED_SUCCESS: 3,
    FAILED: 4,
    ERROR: 5,
}


# --------------------------------------------------------------------------- #
# Fetching Django's tests
# --------------------------------------------------------------------------- #


class FetchError(RuntimeError):
    """An sdist could not be downloaded or did not contain tests/."""


def installed_django_version() -> str:
    import django

    return str(django.__version__)


def django_tests_dir(version: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Where the ``tests/`` directory of Django ``version`` is (or will be) extracted."""
    return cache_dir / "django-tests" / version / "tests"


def ensure_django_tests(
    version: str | None = None, cache_dir: Path = DEFAULT_CACHE_DIR, *, quiet: bool = False
) -> Path:
    """Return the extracted ``tests/`` directory of Django ``version``.

    Downloads the sdist with pip and extracts ``tests/`` on first use; later
    calls reuse it.  Publication is an atomic rename, so concurrent callers and
    interrupted runs never see a half-extracted tree.
    """
    version = version or installed_django_version()
    tests_dir = django_tests_dir(version, cache_dir)
    version_root = tests_dir.parent
    marker = version_root / ".complete"
    if marker.is_file() and (tests_dir / "cache" / "tests.py").is_file():
        return tests_dir

    sdist = _find_sdist(cache_dir / "django-sdist", version)
    if sdist is None:
        sdist = download_sdist(version, cache_dir / "django-sdist", quiet=quiet)

    version_root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=version_root.parent))
    staging.chmod(0o755)
    try:
        _extract_tests(sdist, staging / "tests")
        (staging / ".complete").write_text(f"{sdist.name}\n", encoding="utf-8")
        if version_root.exists() and not marker.is_file():
            shutil.rmtree(version_root)  # left over from an older layout
        try:
            staging.rename(version_root)
        except OSError:
            if not marker.is_file():  # not a lost race with a concurrent fetch
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tests_dir


def _find_sdist(sdist_dir: Path, version: str, project: str = "django") -> Path | None:
    if not sdist_dir.is_dir():
        return None
    # Sdist names normalise '-' to '_' (django_redis-7.0.0.tar.gz).
    wanted = {f"{name}-{version}.tar.gz" for name in (project, project.replace("-", "_"))}
    for candidate in sorted(sdist_dir.iterdir()):
        if candidate.name.lower() in wanted and tarfile.is_tarfile(candidate):
            return candidate
    return None


def download_sdist(version: str, sdist_dir: Path, *, quiet: bool, project: str = "django") -> Path:
    """Return the sdist of `project` `version`, downloaded from PyPI into `sdist_dir`."""
    sdist_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{project}=={version}",
        "-d",
        str(sdist_dir),
    ]
    if not quiet:
        print(f"fetching the {project} {version} sdist: {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sdist = _find_sdist(sdist_dir, version, project)
    if proc.returncode != 0 or sdist is None:
        raise FetchError(
            f"could not download the {project} {version} sdist (pip exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return sdist


def _extract_tests(sdist: Path, destination: Path) -> None:
    """Extract ``<top>/tests/**`` of ``sdist`` into ``destination``."""
    scratch = destination.parent / "extract"
    with tarfile.open(sdist, "r:gz") as archive:
        members = archive.getmembers()
        tops = {m.name.split("/", 1)[0] for m in members}
        if len(tops) != 1:
            raise FetchError(f"{sdist.name}: expected one top-level directory, got {tops}")
        (top,) = tops
        prefix = f"{top}/tests/"
        wanted = [m for m in members if m.name.startswith(prefix)]
        if not wanted:
            raise FetchError(f"{sdist.name} has no {prefix}")
        if hasattr(tarfile, "data_filter"):
            archive.extractall(scratch, members=wanted, filter="data")
        else:  # Python < 3.11.4: no extraction filters; refuse unsafe members ourselves.
            for member in wanted:
                if member.issym() or member.islnk() or ".." in Path(member.name).parts:
                    raise FetchError(f"{sdist.name}: refusing to extract {member.name}")
            archive.extractall(scratch, members=wanted)
    (scratch / top / "tests").rename(destination)
    shutil.rmtree(scratch)


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #


@dataclass
class BackendSpec:
    """The cache backend to run the suite against."""

    label: str
    backend: str
    location: str
    options: JSONDict = field(default_factory=dict)
    extra_apps: list[str] = field(default_factory=list)

    def cache_params(self) -> JSONDict:
        params: JSONDict = {"BACKEND": self.backend, "LOCATION": self.location}
        if self.options:
            params["OPTIONS"] = copy.deepcopy(self.options)
        return params


def builtin_spec(server_url: str, db: int = 11) -> BackendSpec:
    """Django's RedisCache on ``server_url`` (no db in the URL), database ``db``.

    The database goes in OPTIONS, not in the URL: test_redis_pool_options overrides
    OPTIONS with ``{"db": 5, ...}`` and expects the pool to use db 5, but redis-py's
    ``ConnectionPool.from_url`` lets a db number in the URL path win over the ``db``
    kwarg.  (Django's own CI points LOCATION at a bare ``redis://host:port``.)
    """
    return BackendSpec(
        label=BUILTIN_LABEL,
        backend=BUILTIN_BACKEND,
        location=_server_only(server_url),
        options={"db": db},
    )


def candidate_spec(
    server_url: str,
    db: int = 12,
    *,
    label: str = "tiercache",
    backend: str = "django_tiercache.backend.TieredCache",
    options: Mapping[str, Any] | None = None,
    extra_apps: Sequence[str] = ("django_tiercache",),
) -> BackendSpec:
    """The backend under test on ``server_url``, database ``db`` (in the URL path)."""
    return BackendSpec(
        label=label,
        backend=backend,
        location=f"{_server_only(server_url)}/{db}",
        options=dict(options or {}),
        extra_apps=list(extra_apps),
    )


def _server_only(url: str) -> str:
    """``redis://host:port/0`` -> ``redis://host:port`` (drops a db path and query)."""
    match = re.fullmatch(r"(rediss?://[^/?#]+)(?:/\d*)?/?", url.strip())
    if match is None:
        raise ValueError(f"expected redis[s]://[user:password@]host:port[/db], got {url!r}")
    return match.group(1)


@dataclass
class SuiteResult:
    label: str
    backend: str
    location: str
    django_version: str
    options: JSONDict = field(default_factory=dict)
    suite: str = SUITE_ID
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    fatal: JSONDict | None = None

    @property
    def counts(self) -> dict[str, int]:
        kinds = (PASSED, FAILED, ERROR, SKIPPED, EXPECTED_FAILURE, UNEXPECTED_SUCCESS)
        counts = dict.fromkeys(kinds, 0)
        for outcome in self.outcomes.values():
            counts[outcome] += 1
        counts["total"] = len(self.outcomes)
        return counts

    def tests_with(self, *outcomes: str) -> list[str]:
        return sorted(name for name, outcome in self.outcomes.items() if outcome in outcomes)

    @property
    def not_passing(self) -> list[str]:
        return self.tests_with(FAILED, ERROR, UNEXPECTED_SUCCESS)

    def summary_line(self) -> str:
        if self.fatal is not None:
            return (
                f"django-suite {self.label}: did not run ({self.fatal.get('kind')}: "
                f"{self.fatal.get('message')}) [{self.backend}]"
            )
        c = self.counts
        return (
            f"django-suite {self.label}: {c[PASSED]} passed, {c[FAILED]} failed, "
            f"{c[ERROR]} errors, {c[SKIPPED]} skipped, {c[EXPECTED_FAILURE]} expected failures, "
            f"{c[UNEXPECTED_SUCCESS]} unexpected successes "
            f"({c['total']} tests of {self.suite}, Django {self.django_version}, "
            f"{self.duration_s:.1f}s) [{self.backend}]"
        )

    def to_json(self) -> JSONDict:
        data = asdict(self)
        data["counts"] = self.counts
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuiteResult:
        known = {f for f in cls.__dataclass_fields__ if f in data}
        return cls(**{name: data[name] for name in known})


def parse_result_line(stdout: str) -> SuiteResult | None:
    """Find the ``DJANGO_SUITE_RESULT`` line in a ``run`` sub-command's stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return SuiteResult.from_json(json.loads(line[len(RESULT_PREFIX) :]))
    return None


class _OutcomeRecorder(unittest.TextTestResult):
    """TextTestResult that also records one outcome per test method."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.tracebacks: dict[str, str] = {}

    @staticmethod
    def _name(test: unittest.TestCase) -> str:
        case = getattr(test, "test_case", test)  # a subTest reports on its parent test
        method = getattr(case, "_testMethodName", None)
        return str(method) if method else str(test)  # e.g. setUpClass error holders

    def _record(self, test: unittest.TestCase, outcome: str, err: ExcInfo | None = None) -> None:
        name = self._name(test)
        previous = self.outcomes.get(name)
        if previous is None or _SEVERITY[outcome] > _SEVERITY[previous]:
            self.outcomes[name] = outcome
        if err is not None:
            text = "".join(traceback.format_exception(err[1]))
            last = [line for line in text.strip().splitlines() if line.strip()][-1:]
            describe_subtest = getattr(test, "_subDescription", None)
            sub = f"{describe_subtest()} " if callable(describe_subtest) else ""
            self.messages.setdefault(name, sub + (last[0] if last else ""))
            self.tracebacks[name] = (self.tracebacks.get(name, "") + text)[-6000:]

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, PASSED)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, FAILED, err)

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._record(test, ERROR, err)

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, SKIPPED)
        self.messages.setdefault(self._name(test), f"skipped: {reason}")

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, EXPECTED_FAILURE)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, UNEXPECTED_SUCCESS)

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = FAILED if issubclass(err[0], test.failureException) else ERROR
            self._record(subtest, outcome, err)


# --------------------------------------------------------------------------- #
# Running the suite in this process
# --------------------------------------------------------------------------- #


def _configure_django(tests_dir: Path, spec: BackendSpec, tmpdir: Path) -> None:
    """Configure settings the way tests/runtests.py + tests/test_sqlite.py do."""
    from django.conf import settings
    from django.utils.log import DEFAULT_LOGGING

    log_config = copy.deepcopy(DEFAULT_LOGGING)
    log_config["loggers"]["django"]["level"] = "ERROR"
    installed_apps = [*ALWAYS_INSTALLED_APPS]
    installed_apps += [app for app in spec.extra_apps if app not in installed_apps]
    installed_apps.append("cache")  # the test app itself (models: Poll)
    settings.configure(
        # tests/test_sqlite.py
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3"},
            "other": {"ENGINE": "django.db.backends.sqlite3"},
        },
        SECRET_KEY="django_tests_secret_key",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=False,
        # The backend under test. cache.tests reads settings.CACHES at import time
        # (RedisCache_params); RedisCacheTests then overrides CACHES per class.
        CACHES={"default": spec.cache_params()},
        # tests/runtests.py: setup_collect_tests() / setup_run_tests()
        INSTALLED_APPS=installed_apps,
        ROOT_URLCONF="urls",
        STATIC_URL="static/",
        STATIC_ROOT=str(tmpdir / "static"),
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(tests_dir / "templates")],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                },
            }
        ],
        LANGUAGE_CODE="en",
        SITE_ID=1,
        MIDDLEWARE=list(ALWAYS_MIDDLEWARE),
        MIGRATION_MODULES={"auth": None, "contenttypes": None, "sessions": None},
        LOGGING=log_config,
        SILENCED_SYSTEM_CHECKS=["fields.W342"],
        TEST_RUNNER="django.test.runner.DiscoverRunner",
    )


def _install_runtests_warning_filters() -> None:
    """The warning filters tests/runtests.py installs at import time."""
    from django.utils import deprecation

    for name in ("RemovedInDjango60Warning", "RemovedInDjango61Warning"):
        category = getattr(deprecation, name, None)
        if category is not None:
            warnings.simplefilter("error", category)
    warnings.simplefilter("error", ResourceWarning)
    warnings.simplefilter("error", RuntimeWarning)


def _module_missing(exc: ImportError, dotted_path: str) -> bool:
    """True if ``exc`` says the backend's own module (or a parent) does not exist."""
    module_path = dotted_path.rpartition(".")[0]
    parents = {".".join(module_path.split(".")[: i + 1]) for i in range(module_path.count(".") + 1)}
    return isinstance(exc, ModuleNotFoundError) and exc.name in parents


def _flush(location: str, options: Mapping[str, Any]) -> None:
    """FLUSHDB the database(s) ``location`` points at, before the run.

    A lower-case ``db`` option is honoured the way django's RedisCache honours it
    (redis-py's ``from_url``: a db number in the URL path wins over it).
    """
    import redis

    db = options.get("db")
    for url in re.split("[;,]", location):
        client = redis.Redis.from_url(url.strip(), **({"db": db} if isinstance(db, int) else {}))
        try:
            client.flushdb()
        finally:
            client.close()


def build_test_class(spec: BackendSpec) -> type[unittest.TestCase]:
    """``cache.tests.RedisCacheTests`` re-targeted at ``spec`` (Django must be set up)."""
    from cache import tests as cache_tests  # type: ignore[import-not-found]
    from django.test import override_settings

    base: type[unittest.TestCase] = cache_tests.RedisCacheTests
    caches_setting = cache_tests.caches_setting_for_tests(
        base=spec.cache_params(), exclude=cache_tests.redis_excluded_caches
    )
    namespace: JSONDict = {
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": f"{base.__qualname__} run against {spec.backend} ({spec.label}).",
        # RedisCacheTests is @skipUnless(RedisCache_params) - i.e. skipped unless
        # settings.CACHES held django's RedisCache at import; we configure it here.
        "__unittest_skip__": False,
    }
    if spec.backend != BUILTIN_BACKEND:
        # RedisCacheTests expects redis-py's ResponseError from incr() on a non-integer:
        # an internal of Django's backend. The cache contract (BaseCacheTests) says TypeError.
        namespace["incr_decr_type_error"] = TypeError
    test_class = type(base.__name__, (base,), namespace)
    decorated: type[unittest.TestCase] = override_settings(CACHES=caches_setting)(test_class)
    return decorated


def run_in_process(
    spec: BackendSpec,
    tests_dir: Path,
    *,
    only: Sequence[str] = (),
    verbosity: int = 1,
    flush: bool = True,
) -> SuiteResult:
    """Run the suite for ``spec`` in this process (configures Django: once per process)."""
    import django

    started = time.monotonic()
    result = SuiteResult(
        label=spec.label,
        backend=spec.backend,
        location=spec.location,
        options=spec.options,
        django_version=str(django.__version__),
    )
    # The working tree's tiercache/django_tiercache first (never an installed copy);
    # Django's tests/ last, so that none of its ~200 top-level packages (signals,
    # version, validators, requirements, ...) can shadow an installed module.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    if str(tests_dir) not in sys.path:
        sys.path.append(str(tests_dir))
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    os.environ["RUNNING_DJANGOS_TEST_SUITE"] = "true"
    _install_runtests_warning_filters()
    gc.set_threshold(100_000)

    with tempfile.TemporaryDirectory(prefix="django_") as tmp:
        tempfile.tempdir = os.environ["TMPDIR"] = tmp  # as runtests.py does
        _configure_django(tests_dir, spec, Path(tmp))
        django.setup()

        from django.test.runner import DiscoverRunner
        from django.utils.module_loading import import_string

        try:
            import_string(spec.backend)
        except ImportError as exc:
            kind = (
                "backend-module-missing"
                if _module_missing(exc, spec.backend)
                else "backend-import-error"
            )
            result.fatal = {
                "kind": kind,
                "message": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-6000:],
            }
            return result

        test_class = build_test_class(spec)
        suite = unittest.TestLoader().loadTestsFromTestCase(test_class)
        if only:
            wanted = set(only)
            loaded = {getattr(test, "_testMethodName", "") for test in suite}
            if unknown := wanted - loaded:
                raise SystemExit(f"unknown test names: {sorted(unknown)}")
            suite = unittest.TestSuite(
                test for test in suite if getattr(test, "_testMethodName", "") in wanted
            )
        if flush:
            _flush(spec.location, spec.options)

        class SuiteRunner(DiscoverRunner):
            recorded: _OutcomeRecorder | None = None

            def build_suite(self, *args: Any, **kwargs: Any) -> unittest.TestSuite:
                return suite

            def get_resultclass(self) -> type[unittest.TextTestResult]:
                return _OutcomeRecorder

            def run_suite(self, *args: Any, **kwargs: Any) -> Any:
                recorded = super().run_suite(*args, **kwargs)
                if isinstance(recorded, _OutcomeRecorder):
                    type(self).recorded = recorded
                return recorded

        runner = SuiteRunner(verbosity=verbosity, interactive=False, parallel=1)
        runner.run_tests([])
        recorded = SuiteRunner.recorded
        assert recorded is not None
        result.outcomes = dict(sorted(recorded.outcomes.items()))
        result.messages = dict(sorted(recorded.messages.items()))
        result.tracebacks = dict(sorted(recorded.tracebacks.items()))
    result.duration_s = round(time.monotonic() - started, 2)
    return result


# --------------------------------------------------------------------------- #
# Running in subprocesses and comparing
# --------------------------------------------------------------------------- #


class SuiteCrashedError(RuntimeError):
    """The ``run`` subprocess did not produce a result line."""


def run_in_subprocess(
    spec: BackendSpec,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    only: Sequence[str] = (),
    verbosity: int = 1,
    flush: bool = True,
    timeout: float = 600.0,
) -> tuple[SuiteResult, subprocess.CompletedProcess[str]]:
    """Run the suite for ``spec`` in a fresh interpreter; return its result and process."""
    started = SuiteProcess(spec, cache_dir=cache_dir, only=only, verbosity=verbosity, flush=flush)
    return started.wait(timeout)


class SuiteProcess:
    """The suite for one backend, running in a fresh interpreter from construction on.

    Several may run at once: Django's suite mostly sleeps in its expiry tests, so the
    runs overlap well. Their output goes to files, not pipes, so none blocks on a full
    pipe while another is awaited.
    """

    def __init__(
        self,
        spec: BackendSpec,
        *,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        only: Sequence[str] = (),
        verbosity: int = 1,
        flush: bool = True,
    ) -> None:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--cache-dir",
            str(cache_dir),
            "run",
            "--label",
            spec.label,
            "--backend",
            spec.backend,
            "--location",
            spec.location,
            "--options",
            json.dumps(spec.options),
            "--verbosity",
            str(verbosity),
        ]
        for app in spec.extra_apps:
            cmd += ["--extra-app", app]
        for name in only:
            cmd += ["--only", name]
        if not flush:
            cmd.append("--no-flush")
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.spec = spec
        self._cmd = cmd
        self._stdout = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._process = subprocess.Popen(
            cmd, stdout=self._stdout, stderr=self._stderr, text=True, env=env, cwd=REPO_ROOT
        )
        self._outcome: tuple[SuiteResult, subprocess.CompletedProcess[str]] | None = None

    def wait(self, timeout: float) -> tuple[SuiteResult, subprocess.CompletedProcess[str]]:
        """Return the run's result and process once it has ended (at most `timeout` s)."""
        if self._outcome is not None:
            return self._outcome
        try:
            returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise
        outputs = []
        for stream in (self._stdout, self._stderr):
            stream.seek(0)
            outputs.append(stream.read())
            stream.close()
        proc = subprocess.CompletedProcess(self._cmd, returncode, outputs[0], outputs[1])
        result = parse_result_line(proc.stdout)
        if result is None:
            raise SuiteCrashedError(
                f"django suite for {self.spec.label} exited {proc.returncode} without a result "
                f"line\n--- stdout (tail) ---\n{proc.stdout[-4000:]}\n"
                f"--- stderr (tail) ---\n{proc.stderr[-8000:]}"
            )
        self._outcome = (result, proc)
        return self._outcome

    def stop(self) -> None:
        """End the run if nobody waited for it (a test deselected or failed early)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        for stream in (self._stdout, self._stderr):
            stream.close()


@dataclass
class Comparison:
    baseline: SuiteResult
    candidate: SuiteResult
    excluded: Mapping[str, str] = field(default_factory=lambda: dict(BACKEND_INTERNAL_TESTS))

    @property
    def baseline_broken(self) -> list[str]:
        return self.baseline.not_passing

    @property
    def regressions(self) -> list[str]:
        """Tests the baseline passes but the candidate does not (minus exclusions)."""
        return sorted(
            name
            for name in self.baseline.tests_with(PASSED)
            if self.candidate.outcomes.get(name) != PASSED and name not in self.excluded
        )

    @property
    def excluded_not_passing(self) -> list[str]:
        return [n for n in self.candidate.not_passing if n in self.excluded]

    @property
    def ok(self) -> bool:
        return (
            self.baseline.fatal is None
            and self.candidate.fatal is None
            and not self.baseline_broken
            and not self.regressions
        )

    def report_lines(self) -> list[str]:
        lines = [self.baseline.summary_line(), self.candidate.summary_line()]
        if self.candidate.fatal is not None:
            return lines
        failing = self.candidate.not_passing
        lines.append(f"  {self.candidate.label}: {len(failing)} tests not passing")
        for name in failing:
            outcome = self.candidate.outcomes[name]
            if name in self.excluded:
                lines.append(
                    f"    [backend-internal, excluded] {name} ({outcome}): {self.excluded[name]}"
                )
            else:
                lines.append(
                    f"    [contract] {name} ({outcome}): {self.candidate.messages.get(name, '')}"
                )
        for name in self.baseline_broken:
            lines.append(
                f"  baseline {self.baseline.label} does not pass {name}: "
                f"{self.baseline.messages.get(name, '')}"
            )
        if self.regressions:
            lines.append(
                f"  REGRESSIONS vs {self.baseline.label} ({len(self.regressions)}): "
                + ", ".join(self.regressions)
            )
        else:
            lines.append(
                f"  no regressions vs {self.baseline.label} "
                f"({len(self.excluded)} backend-internal tests excluded)"
            )
        return lines


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def _json_object(text: str) -> JSONDict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("OPTIONS must be a JSON object")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run Django's cache test suite (cache.tests.RedisCacheTests) "
        "against a cache backend."
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where the Django sdist and its tests/ are cached (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("fetch", help="download/extract Django's tests/ and print its path")

    run = sub.add_parser("run", help="run the suite for one backend in this process")
    run.add_argument("--label", default=BUILTIN_LABEL)
    run.add_argument("--backend", default=BUILTIN_BACKEND, help="dotted path of the backend")
    run.add_argument("--location", required=True, help="LOCATION, e.g. redis://127.0.0.1:6379/11")
    run.add_argument("--options", type=_json_object, default={}, help="OPTIONS as a JSON object")
    run.add_argument(
        "--extra-app",
        action="append",
        default=[],
        dest="extra_apps",
        help="extra INSTALLED_APPS entry (repeatable), e.g. django_tiercache",
    )
    run.add_argument(
        "--only", action="append", default=[], help="run only this test method (repeatable)"
    )
    run.add_argument(
        "--no-flush",
        dest="flush",
        action="store_false",
        help="do not FLUSHDB the LOCATION before the run",
    )
    run.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    run.add_argument("-v", "--verbosity", type=int, default=1, choices=[0, 1, 2, 3])

    cmp_ = sub.add_parser(
        "compare",
        help="run django's RedisCache and a candidate backend (each in a subprocess) and "
        "check that every test the built-in passes also passes for the candidate",
    )
    cmp_.add_argument(
        "--redis", required=True, help="Redis server URL without a db, e.g. redis://127.0.0.1:6379"
    )
    cmp_.add_argument(
        "--builtin-db",
        type=int,
        default=11,
        help="db for django's RedisCache, given as OPTIONS db (default: 11)",
    )
    cmp_.add_argument(
        "--candidate-db",
        type=int,
        default=12,
        help="db for the candidate, in its LOCATION URL (default: 12)",
    )
    cmp_.add_argument("--candidate-backend", default="django_tiercache.backend.TieredCache")
    cmp_.add_argument("--candidate-label", default="tiercache")
    cmp_.add_argument(
        "--candidate-options",
        type=_json_object,
        default={},
        help="candidate OPTIONS as a JSON object",
    )
    cmp_.add_argument(
        "--candidate-extra-app",
        action="append",
        dest="candidate_extra_apps",
        help="extra INSTALLED_APPS entry for the candidate run (repeatable; "
        "default: django_tiercache; pass '' for none)",
    )
    cmp_.add_argument("--report", type=Path, help="also write the report to this file")
    cmp_.add_argument("-v", "--verbosity", type=int, default=1, choices=[0, 1, 2, 3])
    return parser


def _emit(result: SuiteResult) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result.to_json(), sort_keys=True) + "\n")
    sys.stdout.write(result.summary_line() + "\n")
    sys.stdout.flush()


def _cmd_run(args: argparse.Namespace) -> int:
    tests_dir = ensure_django_tests(cache_dir=args.cache_dir)
    if args.backend == BUILTIN_BACKEND and re.search(r"://[^/]+/\d", args.location):
        print(
            "django-suite: warning: the LOCATION URL carries a db number; "
            "test_redis_pool_options will fail (it expects OPTIONS db=5 to win). "
            "Use a bare redis://host:port and --options '{\"db\": N}' instead.",
            file=sys.stderr,
        )
    spec = BackendSpec(
        label=args.label,
        backend=args.backend,
        location=args.location,
        options=args.options,
        extra_apps=args.extra_apps,
    )
    result = run_in_process(
        spec, tests_dir, only=args.only, verbosity=args.verbosity, flush=args.flush
    )
    _emit(result)
    if args.json_out:
        args.json_out.write_text(
            json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    if result.fatal is not None:
        return (
            EXIT_BACKEND_MISSING
            if result.fatal["kind"] == "backend-module-missing"
            else EXIT_BACKEND_BROKEN
        )
    return EXIT_TESTS_FAILED if result.not_passing else EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    ensure_django_tests(cache_dir=args.cache_dir)
    extra_apps = (
        ("django_tiercache",)
        if args.candidate_extra_apps is None
        else tuple(app for app in args.candidate_extra_apps if app)
    )
    specs = (
        builtin_spec(args.redis, args.builtin_db),
        candidate_spec(
            args.redis,
            args.candidate_db,
            label=args.candidate_label,
            backend=args.candidate_backend,
            options=args.candidate_options,
            extra_apps=extra_apps,
        ),
    )
    baseline, candidate = (
        run_in_subprocess(spec, cache_dir=args.cache_dir, verbosity=args.verbosity)[0]
        for spec in specs
    )
    comparison = Comparison(baseline, candidate)
    report = "\n".join(comparison.report_lines()) + "\n"
    sys.stdout.write(report)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report, encoding="utf-8")
    return EXIT_OK if comparison.ok else EXIT_TESTS_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            print(ensure_django_tests(cache_dir=args.cache_dir))
            return EXIT_OK
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_compare(args)
    except (FetchError, SuiteCrashedError) as exc:
        print(f"django-suite: {exc}", file=sys.stderr)
        return EXIT_CRASHED
    except Exception:  # e.g. SystemCheckError, a broken settings/app setup
        traceback.print_exc()
        return EXIT_CRASHED


if __name__ == "__main__":
    sys.exit(main())

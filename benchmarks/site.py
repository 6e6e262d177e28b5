"""`python -m benchmarks.site`: is the cache nearly invisible in a real request?

Starts a private Redis, then for each subject a gunicorn (4 sync workers) serving
`benchmarks.site_app` on loopback, and loads it with wrk (16 connections) or, without
wrk, a small Python load generator. Subjects, in alternating rounds:

- ``plain``: the view making no cache call (our backend configured, middleware on);
- ``tiercache``: the view making 20 ``cache.get`` calls, all L1 hits, middleware on;
- ``tiercache-bound``: the same through ``caches["default"]`` looked up once per request
  (what Django's ``cache`` proxy costs shows as the difference);
- ``django-redis``: the same view on django-redis (20 Redis round trips).

Prints requests/s of each (median of the rounds) and the ratios to ``plain`` and to
django-redis, then profiles one worker's requests in-process (middleware scope,
metrics, key making) with cProfile. The figures depend on the machine: say which.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import io
import multiprocessing
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.redis_process import private_redis

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = {
    # name: (BENCH_CACHE, path)
    "plain": ("tiercache", "/plain/"),
    "tiercache": ("tiercache", "/cached/"),
    "tiercache-bound": ("tiercache", "/cached-bound/"),
    "django-redis": ("django-redis", "/cached/"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the site benchmark; print the table and the profile."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.site", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="load per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    loader = "wrk" if shutil.which("wrk") else "python"
    print(f"load generator: {loader}, {args.connections} connections, {args.workers} workers")
    rates: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    with private_redis() as base:
        redis_url = f"{base}/0"
        for round_ in range(args.rounds):
            order = list(SUBJECTS) if round_ % 2 == 0 else list(reversed(SUBJECTS))
            for name in order:
                backend, path = SUBJECTS[name]
                with _gunicorn(backend, redis_url, args.workers) as port:
                    url = f"http://127.0.0.1:{port}{path}"
                    _load(url, 1.0, args.connections, loader)  # warm every worker's L1
                    rate = _load(url, args.seconds, args.connections, loader)
                rates[name].append(rate)
                print(f"  round {round_ + 1} {name:15} {rate:8.0f} req/s", flush=True)
        median = {name: statistics.median(values) for name, values in rates.items()}
        print()
        # Ratios within a round, then their median: a shared machine's load drifts between
        # rounds more than between the subjects of one round.
        print(
            f"{'subject':16}{'req/s':>8}{'vs plain':>10}{'vs django-redis':>17}"
            "   (median req/s; median of per-round ratios)"
        )
        for name, rate in median.items():
            vs_plain = _ratio(rates[name], rates["plain"])
            vs_redis = _ratio(rates[name], rates["django-redis"])
            print(f"{name:16}{rate:8.0f}{vs_plain:10.2f}{vs_redis:17.2f}")
        print()
        _profile(redis_url)
    return 0


def _ratio(these: list[float], those: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(these, those, strict=True))


@contextlib.contextmanager
def _gunicorn(backend: str, redis_url: str, workers: int) -> Iterator[int]:
    env = {
        "BENCH_CACHE": backend,
        "BENCH_REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "benchmarks.site_app",
    }
    with gunicorn("benchmarks.site_app:application", env, workers, "/plain/") as (port, _):
        yield port


@contextlib.contextmanager
def gunicorn(
    app: str, env: dict[str, str], workers: int, ready_path: str = "/"
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Serve `app` with gunicorn sync workers on a free port; yield the port and the master."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
    )
    try:
        _wait_for(port, process, ready_path)
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(port: int, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited at start")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    raise RuntimeError("gunicorn did not answer in 30 s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _load(url: str, seconds: float, connections: int, loader: str) -> float:
    """Return the requests/s `url` answered under `connections` concurrent clients."""
    if loader == "wrk":
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "Non-2xx" in out:
            raise RuntimeError(f"errors under load:\n{out}")
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert match is not None, out
        return float(match.group(1))
    with multiprocessing.Pool(2) as pool:
        counts = pool.starmap(_hammer, [(url, seconds, connections // 2)] * 2)
    return sum(counts) / seconds


def _hammer(url: str, seconds: float, clients: int) -> int:
    """Send requests from `clients` threads for `seconds`; return how many were answered."""
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < stop:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            connection.request("GET", parts.path)
            connection.getresponse().read()
            connection.close()  # gunicorn's sync workers close after each response
            done[index] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done)


def _profile(redis_url: str) -> None:
    """Profile the 20-hit view in this process, and time it against the plain view."""
    os.environ.update(
        BENCH_CACHE="tiercache",
        BENCH_REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="benchmarks.site_app",
    )
    from benchmarks import site_app

    handler = site_app.application
    environ = {
        "REQUEST_METHOD": "GET",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }

    def call(path: str) -> None:
        handler({**environ, "PATH_INFO": path}, lambda status, headers: None)  # type: ignore[operator]

    for _ in range(200):
        call("/cached/")
        call("/cached-bound/")
    per_request = {}
    paths = ("/plain/", "/cached/", "/cached-bound/")
    for path in paths:
        per_request[path] = float("inf")
    for _ in range(7):  # interleaved, best of each: the machine's noise only adds
        for path in paths:
            started = time.perf_counter()
            for _ in range(1000):
                call(path)
            per_request[path] = min(per_request[path], (time.perf_counter() - started) / 1000)
    plain = per_request["/plain/"]
    print(f"in-process, best of 7 x 1000 requests: plain view {plain * 1e6:.1f} µs")
    for path, label in (("/cached/", "cache.get"), ("/cached-bound/", 'caches["default"] once')):
        extra = (per_request[path] - plain) / 20
        print(
            f"  20-hit view, {label}: {per_request[path] * 1e6:.1f} µs, "
            f"{extra * 1e6:.2f} µs per hit in a request"
        )
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3000):
        call("/cached/")
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values())  # own time of every function
    by_share: dict[str, float] = {}
    by_file: dict[str, float] = {}
    by_function: dict[str, float] = {}
    for (file, _, name), row in rows.items():
        where = _area(file)
        by_file[where] = by_file.get(where, 0.0) + row[2]
        by_function[f"{Path(file).name}:{name}"] = row[2]
        # A builtin's time (getattr, lock, pickle...) goes to the share of its callers.
        callers = row[4] if file == "~" and row[4] else {(file, 0, name): (0, 0, row[2], 0)}
        for (caller_file, _, _), edge in callers.items():
            share = _share(_area(caller_file))
            by_share[share] = by_share.get(share, 0.0) + edge[2]
    print("cProfile of 3000 requests to the 20-hit view (cache.get), own time by share:")
    for where, seconds in sorted(by_share.items(), key=lambda item: -item[1]):
        print(f"  {where:52} {seconds / total * 100:5.1f}%")
    print("by module:")
    for where, seconds in sorted(by_file.items(), key=lambda item: -item[1])[:10]:
        print(f"  {where:52} {seconds / total * 100:5.1f}%")
    print("top functions by own time:")
    for where, seconds in sorted(by_function.items(), key=lambda item: -item[1])[:12]:
        print(f"  {where:52} {seconds / total * 100:5.1f}%")


#: What each module's time is spent on, for the profile's summary.
_SHARES = {
    "django/utils/connection.py": "Django's cache proxy (+ asgiref Local)",
    "local.py": "Django's cache proxy (+ asgiref Local)",
    "django/core/cache": "Django's cache proxy (+ asgiref Local)",
    "django_tiercache/metrics.py": "request metrics (scope, record, commit)",
    "django_tiercache/scope.py": "request metrics (scope, record, commit)",
    "django_tiercache/middleware.py": "request metrics (scope, record, commit)",
    "django_tiercache/backend.py": "backend, policy, L1, codec",
    "django_tiercache/codec.py": "backend, policy, L1, codec",
    "tiercache/policy.py": "backend, policy, L1, codec",
    "tiercache/memory.py": "backend, policy, L1, codec",
    "tiercache/keys.py": "backend, policy, L1, codec",
    "benchmarks/site_app.py": "the view's own loop",
}


def _share(where: str) -> str:
    for prefix, share in _SHARES.items():
        if where.startswith(prefix):
            return share
    if where.startswith("django/"):
        return "Django's handler, URL resolving, response"
    return "other (cachetools, contextlib, WSGI glue...)"


def _area(file: str) -> str:
    """Return a short name for the module `file`: ours by name, Django's by package."""
    path = Path(file)
    for package in ("django_tiercache", "tiercache", "benchmarks"):
        if package in path.parts:
            return f"{package}/{path.name}"
    if "django" in path.parts:
        index = path.parts.index("django")
        return "django/" + "/".join(path.parts[index + 1 : index + 3])
    return path.name or file


if __name__ == "__main__":
    raise SystemExit(main())

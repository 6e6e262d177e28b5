"""`python -m benchmarks.site`: is the cache nearly invisible in a real request?

Starts a private Redis, then a gunicorn (4 sync workers) per backend serving
`benchmarks.site_app` on loopback, and loads it with wrk (16 connections) or, without
wrk, a small Python load generator. Subjects, in alternating rounds:

- ``plain``: the view making no cache call (our backend configured, middleware on);
- ``tiercache``: the view making 20 ``cache.get`` calls, all L1 hits, middleware on;
- ``tiercache-bound``: the same through ``caches["default"]`` looked up once per request
  (what Django's ``cache`` proxy costs shows as the difference);
- ``django-redis``: the same view on django-redis (20 Redis round trips).

All gunicorns stay up for the run, and each round loads every subject for a few seconds,
back to back. Prints requests/s of each (median of the rounds), the medians of the
per-round ratios to ``plain`` and to django-redis, and the CPU time the workers spent per
request (from /proc: what a CPU-bound server pays, whatever else the machine runs, with
its ratio to ``plain``'s). Then it times the views in-process and
profiles the 20-hit view with cProfile, summed by share (Django's cache proxy, our
request metrics, backend + policy + L1 + codec, Django's handler). Writes it all to
`benchmarks/results/site-latest.md`. The figures depend on the machine: say which.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import io
import multiprocessing
import os
import platform
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
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.redis_process import private_redis
from benchmarks.report import save

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "site-latest.md"
SUBJECTS = {
    # name: (BENCH_CACHE, path)
    "plain": ("tiercache", "/plain/"),
    "tiercache": ("tiercache", "/cached/"),
    "tiercache-bound": ("tiercache", "/cached-bound/"),
    "django-redis": ("django-redis", "/cached/"),
}
LABELS = {
    "plain": "plain view, no cache call",
    "tiercache": "20 L1 hits, `cache.get` (Django's proxy)",
    "tiercache-bound": '20 L1 hits, `caches["default"]` once per request',
    "django-redis": "20 gets, django-redis, `cache.get` (Redis's own CPU not counted)",
}


def main(argv: list[str] | None = None) -> int:
    """Run the site benchmark; print the table and the profile, and write them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.site", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="load per subject and round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    loader = "wrk" if shutil.which("wrk") else "python"
    setup = f"load generator: {loader}, {args.connections} connections, {args.workers} workers"
    print(setup)
    load_before = os.getloadavg()
    started = time.monotonic()
    rates: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    cpu: dict[str, list[float]] = {name: [] for name in SUBJECTS}  # workers' s per request
    with private_redis() as base, contextlib.ExitStack() as servers:
        redis_url = f"{base}/0"
        # One gunicorn per backend, all up for the whole run, so that each round loads
        # the subjects back to back, seconds apart: the machine's drift between them is
        # what a per-round ratio cancels.
        served = {
            backend: servers.enter_context(_gunicorn(backend, redis_url, args.workers))
            for backend in sorted({backend for backend, _ in SUBJECTS.values()})
        }
        urls = {
            name: f"http://127.0.0.1:{served[backend][0]}{path}"
            for name, (backend, path) in SUBJECTS.items()
        }
        for url in urls.values():
            _load(url, 1.0, args.connections, loader)  # warm every worker's L1
        workers = {name: _children(served[backend][1]) for name, (backend, _) in SUBJECTS.items()}
        for round_ in range(args.rounds):
            order = list(SUBJECTS) if round_ % 2 == 0 else list(reversed(SUBJECTS))
            for name in order:
                before = _cpu_seconds(workers[name])
                rate = _load(urls[name], args.seconds, args.connections, loader)
                cpu[name].append((_cpu_seconds(workers[name]) - before) / (rate * args.seconds))
                rates[name].append(rate)
            print(
                f"  round {round_ + 1:2}: "
                + ", ".join(f"{name} {rates[name][-1]:.0f}" for name in SUBJECTS)
                + " req/s",
                flush=True,
            )
        servers.close()
        load_after = os.getloadavg()
        elapsed = time.monotonic() - started
        table = _table(rates, cpu)
        print("\n".join(["", *table, ""]))
        profile = _profile(redis_url)
    command = f"python -m benchmarks.site --rounds {args.rounds} --seconds {args.seconds:g}"
    save(
        [
            "# Site benchmark: the cache inside a real Django request",
            "",
            f"`{command}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s; "
            f"{setup}; Python {platform.python_version()}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs; load average {_loads(load_before)} before, "
            f"{_loads(load_after)} after (a shared VM: other jobs ran meanwhile).",
            "",
            *table,
            "",
            "```",
            *profile,
            "```",
            "",
        ],
        RESULTS,
    )
    return 0


def _table(rates: dict[str, list[float]], cpu: dict[str, list[float]]) -> list[str]:
    """Return the Markdown table: median req/s, worker CPU, medians of per-round ratios."""
    lines = [
        f"| subject ({len(rates['plain'])} rounds) | req/s | vs plain | vs django-redis "
        "| workers' CPU per request | plain's CPU / this |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, values in rates.items():
        vs_plain = _ratio(values, rates["plain"])
        vs_redis = _ratio(values, rates["django-redis"])
        cpu_ratio = _ratio(cpu["plain"], cpu[name])
        lines.append(
            f"| {LABELS[name]} | {statistics.median(values):,.0f} | {vs_plain:.2f} "
            f"| {vs_redis:.2f} | {statistics.median(cpu[name]) * 1e6:.0f} µs | {cpu_ratio:.2f} |"
        )
    return lines


def _children(master: int) -> list[int]:
    """Return the pids of the processes whose parent is `master` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int(_stat(entry.name)[1]) == master:
                    found.append(int(entry.name))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """Return the user + system CPU seconds the processes `pids` have used."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat(str(pid))
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str]:
    """Return /proc/<pid>/stat's fields after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _loads(averages: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in averages)


def _ratio(these: list[float], those: list[float]) -> float:
    """Return the median of the per-round ratios: a round's subjects ran seconds apart."""
    return statistics.median(a / b for a, b in zip(these, those, strict=True))


@contextlib.contextmanager
def _gunicorn(backend: str, redis_url: str, workers: int) -> Iterator[tuple[int, int]]:
    """Serve the site on `backend`; yield the port and the master's pid."""
    env = {
        "BENCH_CACHE": backend,
        "BENCH_REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "benchmarks.site_app",
    }
    with gunicorn("benchmarks.site_app:application", env, workers, "/plain/") as (port, master):
        yield port, master.pid


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


def _profile(redis_url: str) -> list[str]:
    """Time the 20-hit views against the plain one in this process, and profile one.

    Print the findings and return their lines.
    """
    lines: list[str] = []
    say = lines.append
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
    say(f"in-process, best of 7 x 1000 requests: plain view {plain * 1e6:.1f} µs")
    for path, label in (("/cached/", "cache.get"), ("/cached-bound/", 'caches["default"] once')):
        extra = (per_request[path] - plain) / 20
        say(
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
    say("cProfile of 3000 requests to the 20-hit view (cache.get), own time by share:")
    for where, seconds in sorted(by_share.items(), key=lambda item: -item[1]):
        say(f"  {where:52} {seconds / total * 100:5.1f}%")
    say("by module:")
    for where, seconds in sorted(by_file.items(), key=lambda item: -item[1])[:10]:
        say(f"  {where:52} {seconds / total * 100:5.1f}%")
    say("top functions by own time:")
    for where, seconds in sorted(by_function.items(), key=lambda item: -item[1])[:12]:
        say(f"  {where:52} {seconds / total * 100:5.1f}%")
    print("\n".join(lines))
    return lines


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
    if file == "~":
        return "(builtins)"
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

"""`manage.py tiercache_demo`: start a private Redis, migrate, create the demo admin, serve.

`--cluster` and `--sentinel` start a private Redis Cluster or Sentinel set instead.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from example_project.demo.redis_process import PrivateRedis, answers_ping, die_with_parent

MANAGE_PY = Path(__file__).resolve().parents[4] / "example_project" / "manage.py"
DEMO_USER = "admin"


class Command(BaseCommand):
    help = (
        "Run the example site on http://127.0.0.1:8000/ with a private, throwaway "
        "redis-server (stopped on exit); --redis URL uses an existing Redis instead."
    )
    # The checks would build the cache before we know where Redis is; runserver runs them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8000, help="Port to serve on (default 8000)."
        )
        parser.add_argument("--addr", default="127.0.0.1", help="Address to serve on.")
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--redis",
            metavar="URL",
            help="Use this existing Redis (the site writes its dj:* and metrics keys there).",
        )
        which.add_argument("--no-redis", action="store_true", help="Run without Redis (L1 only).")
        which.add_argument(
            "--cluster",
            action="store_true",
            help="Start a private Redis Cluster of 3 primaries and run on it (CLUSTER: True).",
        )
        which.add_argument(
            "--sentinel",
            action="store_true",
            help="Start a private master, replica and 3 Sentinels and run on them (SENTINELS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        private: Stoppable | None = None
        server: subprocess.Popen[bytes] | None = None
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            if options["cluster"] or options["sentinel"]:
                url, how, private, where = _private_topology(cluster=options["cluster"])
            else:
                url, how, private = self._choose_redis(
                    options["redis"], no_redis=options["no_redis"]
                )
                where = {}
            call_command("migrate", interactive=False, verbosity=0)
            password = self._demo_admin()
            token = os.environ.get("TIERCACHE_METRICS_TOKEN") or secrets.token_urlsafe(16)
            site = f"http://{options['addr']}:{options['port']}"
            self._banner(site, url, how, password, token, where=where)
            server = subprocess.Popen(
                [
                    *die_with_parent(),
                    sys.executable,
                    str(MANAGE_PY),
                    "runserver",
                    f"{options['addr']}:{options['port']}",
                    "--noreload",
                ],
                env={
                    **os.environ,
                    **where,
                    "TIERCACHE_REDIS_URL": url,
                    "TIERCACHE_METRICS_TOKEN": token,
                },
            )
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            if server is not None and server.poll() is None:
                server.terminate()
                server.wait()
            if private is not None:
                private.stop()
                self.stdout.write("Stopped the private redis-server.")

    def _choose_redis(
        self, given: str | None, *, no_redis: bool
    ) -> tuple[str, str, PrivateRedis | None]:
        # Never a Redis nobody named: the site would write its keys into someone's data.
        if no_redis:
            return "", "none (--no-redis): an L1-only cache in the server process", None
        if given:
            state = "answers" if answers_ping(given) else "does NOT answer; serving from L1 only"
            return given, f"given with --redis ({state})", None
        private = PrivateRedis.start_if_installed()
        if private is not None:
            return private.url, "private redis-server, stopped on exit", private
        return "", "redis-server is not installed: an L1-only cache in the server process", None

    def _demo_admin(self) -> str:
        password = os.environ.get("TIERCACHE_DEMO_PASSWORD") or secrets.token_urlsafe(9)
        user_model = get_user_model()
        user, _ = user_model._default_manager.get_or_create(username=DEMO_USER)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _banner(
        self, site: str, url: str, how: str, password: str, token: str, *, where: dict[str, str]
    ) -> None:
        write = self.stdout.write
        write(self.style.SUCCESS("tiercache example site"))
        write(f"  Redis:        {url or '-'}  [{how}]")
        for name, value in where.items():
            write(f"                {name}={value}")
        write(f"  Site:         {site}/")
        write(f"  Cache stats:  {site}/admin/django_tiercache/cachestats/")
        write(f"  Log in as:    {DEMO_USER} / {password}")
        write(f"  Prometheus:   curl -H 'Authorization: Bearer {token}' {site}/metrics")
        if url:
            python = os.path.relpath(sys.executable)
            manage = os.path.relpath(MANAGE_PY)
            env = " ".join(f"{name}={value}" for name, value in where.items())
            write(
                f"  Operators:    {env + ' ' if env else ''}TIERCACHE_REDIS_URL={url} "
                f"{python} {manage} tiercache stats"
            )
        write("  Visit a few pages (or /simulate/), then reload the stats page. Stop with Ctrl-C.")
        self.stdout.flush()


class Stoppable(Protocol):
    """A private Redis the demo started: `stop()` ends it."""

    def stop(self) -> None: ...


def _private_topology(*, cluster: bool) -> tuple[str, str, Stoppable, dict[str, str]]:
    """Start a private Redis Cluster or Sentinel set with the tests' own launcher."""
    from tests.redis_topology import RedisClusterServers, RedisSentinelServers

    if cluster:
        nodes = RedisClusterServers(primaries=3, replicas=0).start()
        return (
            nodes.seed_url,
            "private Redis Cluster of 3 primaries, stopped on exit",
            _Closing(nodes.close),
            {"TIERCACHE_REDIS_CLUSTER": "1"},
        )
    sentinel = RedisSentinelServers().start()
    addresses = ",".join(f"{host}:{port}" for host, port in sentinel.sentinels)
    return (
        sentinel.url,
        "private master, replica and 3 Sentinels, stopped on exit",
        _Closing(sentinel.close),
        {"TIERCACHE_REDIS_SENTINELS": addresses},
    )


class _Closing:
    def __init__(self, close: Callable[[], None]) -> None:
        self.stop = close


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

"""`manage.py tiercache stats|ping|flush|reset|inspect`: the stats page's figures and actions,
and one key's copies, for operators."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tiercache.contract import tiered_aliases, tiered_cache
from django_tiercache.inspection import KeyInspection
from django_tiercache.metrics import metrics_of
from django_tiercache.report import AliasReport, alias_reports
from tiercache import CacheError
from tiercache.topology_nodes import NodeStatus


class Command(BaseCommand):
    help = "Show the tiered caches' figures (summed over every process), ping Redis, flush a namespace."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="{stats,ping,flush,reset,inspect}"
        )
        stats = actions.add_parser(
            "stats", help="Show configuration, health and metrics of each cache."
        )
        stats.add_argument("--json", action="store_true", help="Print JSON instead of text.")
        actions.add_parser("ping", help="Ping Redis behind each cache; fail if one is unreachable.")
        flush = actions.add_parser(
            "flush", help="Delete every key of one namespace (all processes' L1 too)."
        )
        flush.add_argument(
            "--namespace", required=True, help='The namespace, e.g. "user" for "user:123".'
        )
        actions.add_parser("reset", help="Zero the metrics of every process.")
        inspect = actions.add_parser(
            "inspect",
            help="Show how one key is held: in this process's L1 and in Redis (no value shown).",
        )
        inspect.add_argument("key", help='The cache key, as the code uses it, e.g. "user:123".')
        inspect.add_argument("--version", type=int, help="The key's version (default: VERSION).")
        inspect.add_argument(
            "--show-value", action="store_true", help="Also print the value (it may be private)."
        )
        for sub in (stats, flush, inspect, *(actions.choices[name] for name in ("ping", "reset"))):
            sub.add_argument(
                "--alias",
                action="append",
                dest="aliases",
                help="A CACHES alias (repeatable; default: every tiered cache).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = self._aliases(options.get("aliases"))
        action = options["action"]
        if action == "stats":
            self._stats(aliases, as_json=options["json"])
        elif action == "ping":
            self._ping(aliases)
        elif action == "flush":
            self._flush(aliases, options["namespace"])
        elif action == "inspect":
            for alias in aliases:
                found = tiered_cache(alias).inspect(options["key"], options["version"])
                self._write_inspection(alias, found, show_value=options["show_value"])
        else:
            self._reset(aliases)

    def _aliases(self, given: list[str] | None) -> list[str]:
        known = tiered_aliases()
        if not known:
            raise CommandError("No cache in CACHES uses django_tiercache.backend.TieredCache.")
        unknown = sorted(set(given or ()) - set(known))
        if unknown:
            raise CommandError(
                f"Not a tiered cache alias: {', '.join(unknown)}. Tiered: {', '.join(known)}."
            )
        return given or known

    def _stats(self, aliases: list[str], *, as_json: bool) -> None:
        reports = alias_reports(aliases)
        if as_json:
            self.stdout.write(
                json.dumps(
                    [dataclasses.asdict(report) for report in reports], indent=2, default=str
                )
            )
            return
        for report in reports:
            self._write_report(report)

    def _write_report(self, report: AliasReport) -> None:
        write = self.stdout.write
        write(
            self.style.MIGRATE_HEADING(
                f"Cache {report.alias!r}  {report.config.get('location', '')}"
            )
        )
        if report.problem:
            write(self.style.ERROR(f"  cannot open: {report.problem}"))
            return
        redis = report.redis
        if report.redis_reachable:
            write(
                f"  Redis: reachable, ping {redis.get('latency_ms')} ms, "
                f"version {redis.get('version')}, {redis.get('used_memory')} used"
            )
        else:
            write(self.style.WARNING(f"  Redis: unreachable ({redis.get('error')})"))
        l1 = (
            "off"
            if report.l1_capacity is None
            else f"{report.l1_entries}/{report.l1_capacity} entries"
        )
        write(
            f"  L1 (this process): {l1}   breaker: {report.breaker_state} "
            f"(opened {report.breaker_times_opened}x)   bus: {'healthy' if report.bus_healthy else 'unhealthy'}"
        )
        if report.site_wide:
            write(f"  Figures of every process ({report.processes} reporting):")
        else:
            write(self.style.WARNING(f"  {report.figures_note}"))
        header = f"    {'namespace':<20} {'l1_hits':>8} {'l2_hits':>8} {'misses':>8} {'errors':>7} {'total':>8} {'hit_rate':>8}"
        write(header)
        for namespace, stats in report.namespaces.items():
            write(
                f"    {namespace:<20} {stats['l1_hits']:>8} {stats['l2_hits']:>8} {stats['misses']:>8} "
                f"{stats['errors']:>7} {stats['total_requests']:>8} {stats['hit_rate']:>8.1%}"
            )
        if not report.namespaces:
            write("    (no lookups counted yet)")
        if report.views:
            write(f"    {'view':<32} {'requests':>8} {'hit_rate':>8}  namespaces")
            for view in report.views:
                write(
                    f"    {view.view:<32} {view.requests:>8} {view.total['hit_rate']:>8.1%}  {', '.join(view.namespaces)}"
                )

    def _ping(self, aliases: list[str]) -> None:
        failed = []
        for alias in aliases:
            cache = tiered_cache(alias)
            nodes = cache.node_statuses()
            health = cache.redis_health(nodes)  # from the same PINGs: one timeout, not two
            reachable = bool(health.get("reachable"))
            if reachable:
                self.stdout.write(
                    f"{alias}: PONG in {health.get('latency_ms')} ms (Redis {health.get('version')}, "
                    f"{health.get('used_memory')} used)"
                )
            else:
                self.stderr.write(f"{alias}: Redis unreachable: {health.get('error')}")
            for node in nodes:
                # A replica or a Sentinel that does not answer is told, but the cache
                # still works: only a node it sends commands to (it has a breaker) fails.
                reachable = reachable and (node.healthy or node.breaker is None)
                self._write_node(node)
            if not reachable:
                failed.append(alias)
        if failed:
            raise CommandError(f"Redis unreachable for: {', '.join(failed)}")

    def _write_node(self, node: NodeStatus) -> None:
        breaker = f", breaker {node.breaker}" if node.breaker else ""
        if node.healthy:
            self.stdout.write(
                f"  {node.role} {node.address}: PONG in {node.latency_ms} ms{breaker}"
            )
        else:
            self.stderr.write(f"  {node.role} {node.address}: no answer ({node.error}){breaker}")

    def _flush(self, aliases: list[str], namespace: str) -> None:
        if not namespace.strip():
            raise CommandError("--namespace must not be empty.")
        failed = []
        for alias in aliases:
            try:
                deleted = tiered_cache(alias).flush_namespace(namespace)
            except CacheError as error:
                failed.append(alias)
                self.stderr.write(f"{alias}: could not flush namespace {namespace!r}: {error}")
            else:
                self.stdout.write(
                    f"{alias}: flushed namespace {namespace!r} ({deleted} keys deleted)"
                )
        if failed:
            raise CommandError(f"Flush failed for: {', '.join(failed)}")

    def _write_inspection(self, alias: str, found: KeyInspection, *, show_value: bool) -> None:
        write = self.stdout.write
        write(self.style.MIGRATE_HEADING(f"Cache {alias!r}, key {found.key!r}"))
        write(f"  Redis key: {found.redis_key!r}")
        held = found.l1
        if held is None:
            write("  L1 (this process): not held")
        else:
            expiry = "no expiry" if held["ttl"] is None else f"expires in {held['ttl']} s"
            write(
                f"  L1 (this process): {held['value_type']}, {held['size']} bytes, {expiry}, "
                f"stored {_ago(held['created_at'])}"
            )
            if show_value:
                write(f"    value: {held['value']}")
        copy = found.redis
        if copy is None:
            write(f"  Redis: {found.redis_error or 'none (an L1-only cache)'}")
            return
        if copy.type == "none":
            write("  Redis: no such key")
            return
        ttl = "no expiry" if copy.ttl is None else f"TTL {copy.ttl:g} s"
        sizes = [f"{copy.length} bytes stored"] if copy.length is not None else []
        if copy.memory_usage is not None:
            sizes.append(f"memory usage {copy.memory_usage} bytes")
        write(
            f"  Redis: {copy.type}, encoding {copy.encoding or '?'}, {', '.join(sizes) or '?'}, "
            f"{ttl}"
        )
        if copy.value_type is None:
            write(self.style.WARNING(f"    value: unreadable ({copy.problem})"))
        else:
            write(f"    value type: {copy.value_type}")
            if show_value:
                write(f"    value: {copy.value!r}")

    def _reset(self, aliases: list[str]) -> None:
        for alias in aliases:
            problem = metrics_of(tiered_cache(alias), alias).reset_site()
            if problem is None:
                self.stdout.write(f"{alias}: metrics reset in every process")
            else:
                self.stderr.write(f"{alias}: metrics reset in this process only: {problem}")


def _ago(wall_time: float) -> str:
    return f"{max(0.0, time.time() - wall_time):.1f} s ago"

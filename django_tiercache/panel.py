"""`TiercachePanel`: every cache call of a request in django-debug-toolbar (optional install).

Add ``"django_tiercache.panel.TiercachePanel"`` to `DEBUG_TOOLBAR_PANELS`. Each call to a
tiered cache shows its method, key, namespace, which tier answered (L1, L2, miss,
error) and its time. Keys are shown as the caller gave them: this is a development tool.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from debug_toolbar.panels import Panel
from django.core.cache import caches

from django_tiercache import counters
from django_tiercache.contract import tiered_aliases
from django_tiercache.scope import captured

__all__ = ["CacheCall", "TiercachePanel"]

#: The backend methods the panel watches (their `a*` twins are not: the panel is sync).
WATCHED = (
    "get",
    "get_many",
    "set",
    "set_many",
    "add",
    "delete",
    "delete_many",
    "get_or_set",
    "has_key",
    "incr",
    "decr",
    "touch",
    "clear",
)

_TIER_OF = {
    counters.L1_HITS: "L1",
    counters.L2_HITS: "L2",
    counters.MISSES: "miss",
    counters.ERRORS: "error",
}


@dataclass(frozen=True)
class CacheCall:
    """One call to a cache during the request."""

    alias: str
    method: str
    key: str
    namespace: str
    tier: str  # "L1", "L2", "miss", "error", "write", or a mix for batches ("L1 x2, miss")
    redis_calls: int
    ms: float


class TiercachePanel(Panel):
    """Lists each tiered-cache call of the request with the tier that answered it."""

    title = "tiercache"
    template = "django_tiercache/panel.html"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[CacheCall] = []
        self._patched: list[tuple[object, str]] = []

    @property
    def nav_subtitle(self) -> str:
        """Return the call count and time for the side bar."""
        calls = self.get_stats().get("calls", [])  # type: ignore[no-untyped-call]
        total = sum(call["ms"] for call in calls)
        return f"{len(calls)} call{'s' if len(calls) != 1 else ''} in {total:.2f} ms"

    def enable_instrumentation(self) -> None:
        """Wrap this thread's tiered caches so each call is recorded."""
        for alias in tiered_aliases():
            cache = caches[alias]
            for name in WATCHED:
                setattr(cache, name, self._watch(alias, name, getattr(cache, name)))
                self._patched.append((cache, name))

    def disable_instrumentation(self) -> None:
        """Unwrap the caches."""
        for cache, name in self._patched:
            if name in vars(cache):
                delattr(cache, name)
        self._patched.clear()

    def generate_stats(self, request: Any, response: Any) -> None:
        """Store the calls for the template."""
        self.record_stats(  # type: ignore[no-untyped-call]
            {
                "calls": [asdict(call) for call in self.calls],
                "total_ms": round(sum(call.ms for call in self.calls), 3),
            }
        )

    def _watch(self, alias: str, method: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                with captured() as scope:
                    return call(*args, **kwargs)
            finally:
                elapsed = (time.perf_counter() - started) * 1000
                target = args[0] if args else next(iter(kwargs.values()), "")
                self.calls.append(_call_of(alias, method, target, scope.events(), elapsed))

        return watched


def _call_of(
    alias: str,
    method: str,
    target: object,
    events: list[tuple[tuple[str, ...], int]],
    elapsed: float,
) -> CacheCall:
    if isinstance(target, dict | list | tuple | set):
        key = ", ".join(str(k) for k in list(target)[:5]) + (" …" if len(target) > 5 else "")
    else:
        key = str(target)
    outcomes: Counter[str] = Counter()
    namespaces: set[str] = set()
    redis_calls = 0
    for event, count in events:
        if event[0] == "op":
            if event[3] != counters.LATENCY_SUM:
                redis_calls += count
            continue
        outcomes[_TIER_OF.get(event[0], event[0])] += count
        namespaces.add(event[1])
    if not outcomes:
        tier = "write" if redis_calls else "L1 only"
    elif len(outcomes) == 1 and sum(outcomes.values()) == 1:
        (tier,) = outcomes
    else:
        tier = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(outcomes.items()))
    return CacheCall(
        alias=alias,
        method=method,
        key=key,
        namespace=", ".join(sorted(namespaces)) or "—",
        tier=tier,
        redis_calls=redis_calls,
        ms=round(elapsed, 3),
    )

"""get_or_set: one loader call per key, stale-while-revalidate, fail-safe and TTL jitter.

Written once as a flow, like the tier policy: it yields Redis requests and a few more
effects (`Load` the value, `Join` the key's single flight, `Sleep`), and `load` /
`aload` drive it with a sync or an async loader.

Freshness lives in the TTL, with no envelope and no side key. With a grace period
(`max(stale_ttl, fail_safe)`), get_or_set stores a value for `ttl + grace` seconds; it is
fresh while more than `grace` seconds are left and stale (but servable) afterwards.
Plain `get` sees a value until it is gone. An L1 copy never outlives the Redis one, so a
copy with more than `grace` seconds left is fresh without asking Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Generator, Hashable
from dataclasses import dataclass
from typing import Final

from returns.result import Failure, Result, Success

from tiercache import commands, registry
from tiercache.bus import LocalBus
from tiercache.drivers import AsyncExecutor, SyncExecutor, drive, drive_async
from tiercache.errors import CacheError, InvalidTTL, LoaderFailed, NotSerializable
from tiercache.memory import MISSING, MemoryTier
from tiercache.policy import Found, TierPolicy, as_flow
from tiercache.singleflight import ABANDONED, LEADING, SingleFlight

__all__ = [
    "LOCK_PREFIX",
    "Join",
    "Load",
    "Loaded",
    "Loading",
    "Plan",
    "Sleep",
    "Stampede",
    "aload",
    "flights",
    "load",
    "make_plan",
]

#: Redis keys of get_or_set's locks: this prefix, then the cache's full key.
LOCK_PREFIX: Final = "tiercache:lock:"


@dataclass(frozen=True, slots=True)
class Plan:
    """How one get_or_set call loads and keeps its value."""

    #: Seconds the value is fresh (None: forever; 0: compute, keep nothing).
    ttl: float | None
    #: Take a Redis lock so that one process in the whole fleet computes the value.
    lock: bool = False
    #: After `ttl`, serve the stale value this long while one caller refreshes it.
    stale_ttl: float = 0.0
    #: After `ttl`, serve the stale value this long if the loader or Redis fails.
    fail_safe: float = 0.0
    #: Shorten the TTL by a random fraction up to this.
    jitter: float = 0.0

    @property
    def grace(self) -> float:
        """Return how long a value outlives its freshness."""
        return max(self.stale_ttl, self.fail_safe) if self.ttl else 0.0


@dataclass(frozen=True, slots=True)
class Load:
    """Call the loader; the reply is a `Loaded`."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the loader returned, or the exception it raised."""

    value: object
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Lead the single flight of `key` (reply LEADING) or wait for its outcome."""

    key: Hashable
    wait: bool = True


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause for `seconds`."""

    seconds: float


Effect = commands.Request | Load | Join | Sleep
Loading = Generator[Effect, object, Result[object, CacheError]]
_Step = Generator[Effect, object, object]


@dataclass(frozen=True, slots=True)
class _Found:
    value: object


_STALE: Final = object()  # someone else holds the lock: serve the stale value


class Stampede:
    """The get_or_set flow of one cache."""

    def __init__(
        self,
        policy: TierPolicy,
        bus: LocalBus,
        *,
        scope: Hashable,
        lock_timeout: float = 10.0,
        backup_size: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
        token: Callable[[], str] = secrets.token_hex,
    ) -> None:
        self.policy = policy
        self._bus = bus
        self._scope = scope
        self.lock_timeout = lock_timeout
        self._backup_size = backup_size
        self._timer = timer
        self._random = random
        self._token = token
        self._backup: MemoryTier | None = None
        #: Callers that took the value another caller loaded (they did not load it).
        self.joins = 0
        #: Stale values served: while refreshing, or when the loader or Redis failed.
        self.stale_served = 0

    # -- the fail-safe copy ------------------------------------------------------------

    @property
    def backup(self) -> MemoryTier:
        """Return the fail-safe copies: on the bus, so invalidations reach them too."""
        if self._backup is None:
            self._backup = MemoryTier(self._backup_size, None, timer=self._timer)
            self._bus.attach(self._backup)
        return self._backup

    def _keep(
        self, key: str, value: object, raw: bytes | None, fresh_for: float, plan: Plan
    ) -> None:
        """Keep a copy to serve while the loader or Redis fails, up to `fail_safe` stale."""
        if not plan.fail_safe:
            return
        codec = self.policy.codec
        raw = codec.dumps(key, value) if raw is None else raw
        self.backup.put(key, codec.to_l1(value, raw), fresh_for + plan.fail_safe)

    def _kept(self, key: str) -> object:
        if self._backup is None:
            return MISSING
        held = self._backup.get(key)
        return MISSING if held is MISSING else self.policy.codec.from_l1(held)

    # -- the flow ----------------------------------------------------------------------

    def flow(self, key: str, namespace: str, plan: Plan) -> Loading:
        """Return the value of `key`, loading and storing it once when it is missing."""
        grace = plan.grace
        stale: object = MISSING
        age = 0.0  # seconds the stale value is past its freshness
        read = yield from as_flow(self.policy.get(key, namespace, grace))
        down = isinstance(read, Failure)
        if isinstance(read, Success):
            found: Found = read.unwrap()
            if found.value is not MISSING:
                if found.raw is not None:  # from Redis: keep a copy for bad times
                    left = (plan.ttl or 0.0) if found.left is None else found.left - grace
                    self._keep(key, found.value, found.raw, max(0.0, left), plan)
                if found.left is None or found.left > grace:
                    return Success(found.value)
                stale, age = found.value, grace - found.left
        if down and plan.fail_safe:
            stale, age = self._kept(key), 0.0
            if stale is not MISSING:
                return self._stale(stale)  # Redis is down: don't stampede the source
        revalidate = stale is not MISSING and plan.stale_ttl > 0 and age <= plan.stale_ttl
        flight = (self._scope, key)
        if revalidate:
            lead = yield Join(flight, wait=False)
            if lead is not LEADING:
                return self._stale(stale)  # somebody is refreshing it
        else:
            lead = yield Join(flight)
            while lead is ABANDONED:
                lead = yield Join(flight)
            if lead is not LEADING:
                self.joins += 1
                return lead  # type: ignore[return-value]
        serve_stale = revalidate or (
            stale is not MISSING and plan.fail_safe > 0 and age <= plan.fail_safe
        )
        fallback = stale if serve_stale else MISSING
        return (
            yield from self._compute(
                key, namespace, plan, fallback, down=down, revalidate=revalidate
            )
        )

    def _stale(self, value: object) -> Success[object]:
        self.stale_served += 1
        return Success(value)

    def _compute(
        self,
        key: str,
        namespace: str,
        plan: Plan,
        stale: object,
        *,
        down: bool,
        revalidate: bool,
    ) -> Loading:
        """Call the loader and store its value (the caller leads the key's flight).

        `stale` stands in if the loader fails; while revalidating it is also what we
        serve when another process holds the lock (it is refreshing the value).
        """
        policy = self.policy
        token = ""
        if plan.lock and policy.has_l2 and not down and plan.ttl != 0:
            got = yield from self._lock(key, namespace, plan, revalidate)
            if isinstance(got, _Found):
                return Success(got.value)
            if got is _STALE:
                return self._stale(stale)
            token = str(got)
        loaded = yield Load()
        assert isinstance(loaded, Loaded)
        if loaded.error is not None:
            if token:
                yield from self._unlock(key, token)
            error = LoaderFailed(
                f"loader of key {{key}} raised {type(loaded.error).__name__}: {loaded.error}",
                key=key,
            )
            error.__cause__ = loaded.error
            failed = policy.failed(namespace, error)
            fallback = stale if stale is not MISSING or not plan.fail_safe else self._kept(key)
            return failed if fallback is MISSING else self._stale(fallback)
        stored = yield from self._store(key, namespace, loaded.value, plan)
        if token:
            yield from self._unlock(key, token)
        if isinstance(stored, Failure) and isinstance(stored.failure(), NotSerializable):
            return stored  # the loader's value can never be cached: the caller's mistake
        return Success(loaded.value)  # a Redis failure is counted; the value is still good

    def _store(
        self, key: str, namespace: str, value: object, plan: Plan
    ) -> Generator[Effect, object, Result[bool, CacheError]]:
        if plan.ttl == 0:
            return Success(False)
        ttl = plan.ttl
        if ttl is not None and plan.jitter:
            ttl *= 1 - plan.jitter * self._random()
        stored = yield from self.policy.set(
            key, namespace, value, None if ttl is None else ttl + plan.grace
        )
        if isinstance(stored, Success):
            self._keep(key, value, None, ttl or 0.0, plan)
        return stored

    # -- the cross-process lock ----------------------------------------------------------

    def _lock(self, key: str, namespace: str, plan: Plan, revalidate: bool) -> _Step:
        """Return our lock token, a value another process stored, _STALE, or '' (no lock)."""
        lock_key = LOCK_PREFIX + key
        token = self._token()
        millis = max(1, round(self.lock_timeout * 1000))
        waited, pause = 0.0, 0.002
        while True:
            try:
                taken = yield ("SET", lock_key, token, "NX", "PX", millis)
            except CacheError:
                return ""  # no lock to be had: compute without one
            if taken:
                # Another process may have stored it between our read and our lock.
                value = yield from self._fresh(key, namespace, plan)
                if value is MISSING:
                    return token
                yield from self._unlock(key, token)
                return _Found(value)
            if revalidate:
                return _STALE
            while True:
                if waited >= self.lock_timeout:
                    return ""  # the holder is too slow: compute anyway
                delay = pause * (0.5 + self._random())
                yield Sleep(delay)
                waited, pause = waited + delay, min(pause * 2, 0.05)
                try:
                    held = yield ("EXISTS", lock_key)
                except CacheError:
                    return ""
                if not held:
                    break
            value = yield from self._fresh(key, namespace, plan)
            if value is not MISSING:
                return _Found(value)

    def _fresh(self, key: str, namespace: str, plan: Plan) -> _Step:
        read = yield from as_flow(self.policy.get(key, namespace, plan.grace))
        if isinstance(read, Success):
            found: Found = read.unwrap()
            if found.value is not MISSING and (found.left is None or found.left > plan.grace):
                return found.value
        return MISSING

    def _unlock(self, key: str, token: str) -> _Step:
        with contextlib.suppress(CacheError):  # it expires on its own
            yield commands.evalsha(commands.RELEASE_LOCK, [LOCK_PREFIX + key], token)
        return None


def make_plan(
    ttl: float | None,
    *,
    lock: bool = False,
    stale_ttl: float | None = None,
    fail_safe: float | None = None,
    jitter: float = 0.0,
) -> Plan | InvalidTTL:
    """Return the plan of a get_or_set call, or why its options are wrong."""
    for name, seconds in (("stale_ttl", stale_ttl), ("fail_safe", fail_safe)):
        if seconds is not None and (type(seconds) not in (int, float) or not seconds >= 0):
            return InvalidTTL(f"{name} must be seconds >= 0, got {seconds!r}")
    if type(jitter) not in (int, float) or not 0 <= jitter < 1:
        return InvalidTTL(f"TTL jitter must be a fraction in [0, 1), got {jitter!r}")
    return Plan(ttl, bool(lock), float(stale_ttl or 0), float(fail_safe or 0), float(jitter))


def flights() -> SingleFlight:
    """Return this process's single-flight table."""
    return registry.shared(("tiercache", "single_flight"), SingleFlight)


class _Joins:
    """The single flight one get_or_set call leads, if any; finished when it ends."""

    def __init__(self, table: SingleFlight) -> None:
        self._table = table
        self._led: Hashable | None = None

    def join(self, effect: Join) -> object:
        reply, leading = self._table.join(effect.key, wait=effect.wait)
        self._led = effect.key if leading else self._led
        return reply

    async def ajoin(self, effect: Join) -> object:
        reply, leading = await self._table.ajoin(effect.key, wait=effect.wait)
        self._led = effect.key if leading else self._led
        return reply

    def finish(self, outcome: object) -> None:
        """Hand the outcome (ABANDONED if there is none) to those waiting on our flight."""
        if self._led is not None:
            self._table.finish(self._led, outcome)


def load(
    flow: Loading, execute: SyncExecutor | None, loader: Callable[[], object]
) -> Result[object, CacheError]:
    """Run a get_or_set flow with a sync loader."""

    def call(_: Load) -> Loaded:
        try:
            return Loaded(loader())
        except Exception as error:  # the loader is the caller's code: its failure is a value
            return Loaded(None, error)

    joins = _Joins(flights())
    outcome: object = ABANDONED
    try:
        outcome = drive(
            flow,
            execute,
            {Load: call, Join: joins.join, Sleep: lambda effect: time.sleep(effect.seconds)},
        )
        return outcome
    finally:
        joins.finish(outcome)


async def aload(
    flow: Loading, execute: AsyncExecutor | None, loader: Callable[[], Awaitable[object]]
) -> Result[object, CacheError]:
    """Run a get_or_set flow with an async loader."""

    async def call(_: Load) -> Loaded:
        try:
            return Loaded(await loader())
        except Exception as error:  # the loader is the caller's code: its failure is a value
            return Loaded(None, error)

    joins = _Joins(flights())
    outcome: object = ABANDONED
    try:
        outcome = await drive_async(
            flow,
            execute,
            {Load: call, Join: joins.ajoin, Sleep: lambda effect: asyncio.sleep(effect.seconds)},
        )
        return outcome
    finally:
        joins.finish(outcome)

"""The caches under test: Django aliases on one private Redis, and tiercache's core."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OUR_BACKEND",
    "VALUE_DICT",
    "VALUE_STR",
    "CacheCalls",
    "Setup",
    "Subject",
]

OUR_BACKEND = "django_tiercache.backend.TieredCache"

#: The two payloads: a 100-character string and a dict of about 10 KB once pickled.
VALUE_STR = "v" * 100
VALUE_DICT: dict[str, str] = {f"field{i:03d}": "x" * 90 for i in range(100)}


@dataclass(frozen=True)
class Subject:
    """One cache under test, named as in the results."""

    name: str
    label: str
    #: Ours: compared against django-redis and LocMemCache.
    ours: bool
    #: Another process sees its writes (LocMemCache: no).
    shared: bool
    #: Its Redis database; each subject has its own so no keys collide.
    db: int | None


LOCMEM = Subject("locmem", "LocMemCache", ours=False, shared=False, db=None)
BUILTIN = Subject("django_redis_builtin", "Django RedisCache", ours=False, shared=True, db=1)
DJANGO_REDIS = Subject("django_redis", "django-redis", ours=False, shared=True, db=2)
TIERED = Subject("tiered", "ours (L1+L2)", ours=True, shared=True, db=3)
TIERED_L2 = Subject("tiered_l2", "ours, L2 only", ours=True, shared=True, db=4)
CORE = Subject("core", "tiercache core", ours=True, shared=True, db=5)

_DJANGO_SUBJECTS = (LOCMEM, BUILTIN, DJANGO_REDIS, TIERED, TIERED_L2)


@dataclass(frozen=True)
class CacheCalls:
    """The bound methods a benchmark calls, so no adapter sits inside a timed loop."""

    get: Callable[..., Any]
    set: Callable[..., Any]
    get_many: Callable[..., Any]
    set_many: Callable[..., Any]
    incr: Callable[..., Any]
    delete: Callable[..., Any]
    get_dict: Callable[..., Any]
    set_dict: Callable[..., Any]
    aget: Callable[..., Any]
    aset: Callable[..., Any]


@dataclass(frozen=True)
class Setup:
    """Where the caches live; picklable, so helper processes configure themselves alike."""

    base_url: str

    def url(self, subject: Subject) -> str:
        """Return the Redis URL of `subject`'s database."""
        return f"{self.base_url}/{subject.db}"

    def configure(self) -> None:
        """Configure Django in this process with one alias per Django subject."""
        import django
        from django.conf import settings

        settings.configure(
            SECRET_KEY="tiercache-benchmarks-not-secret",
            INSTALLED_APPS=[],
            USE_TZ=True,
            CACHES={s.name: self._cache_setting(s) for s in _DJANGO_SUBJECTS},
        )
        django.setup()

    def _cache_setting(self, subject: Subject) -> dict[str, object]:
        if subject == LOCMEM:
            return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        backend = {
            BUILTIN: "django.core.cache.backends.redis.RedisCache",
            DJANGO_REDIS: "django_redis.cache.RedisCache",
        }.get(subject, OUR_BACKEND)
        options = {"L1_MAXSIZE": 0} if subject == TIERED_L2 else {}
        return {"BACKEND": backend, "LOCATION": self.url(subject), "OPTIONS": options}

    def subjects(self) -> list[Subject]:
        """Return every subject this process can run (ours only once its module imports)."""
        found = [LOCMEM, BUILTIN, DJANGO_REDIS]
        if our_backend_error() is None:
            found += [TIERED, TIERED_L2]
        return [*found, CORE]

    def calls(self, subject: Subject) -> CacheCalls:
        """Return `subject`'s methods; Django's are this thread's instance, as in a view."""
        if subject == CORE:
            sync, asynchronous = _core(self.url(subject))
            return CacheCalls(
                get=sync.get,
                set=sync.set,
                get_many=sync.get_many,
                set_many=sync.set_many,
                incr=sync.increment,
                delete=sync.delete,
                get_dict=sync.get_json,
                set_dict=sync.set_json,
                aget=asynchronous.get,
                aset=asynchronous.set,
            )
        from django.core.cache import caches

        cache = caches[subject.name]
        return CacheCalls(
            get=cache.get,
            set=cache.set,
            get_many=cache.get_many,
            set_many=cache.set_many,
            incr=cache.incr,
            delete=cache.delete,
            get_dict=cache.get,
            set_dict=cache.set,
            aget=cache.aget,
            aset=cache.aset,
        )

    def close(self, subjects: list[Subject], loop: asyncio.AbstractEventLoop) -> None:
        """Release what `calls` opened in this thread, sync and on `loop`."""
        for subject in subjects:
            if subject == CORE:
                sync, asynchronous = _core(self.url(subject))
                sync.close()
                loop.run_until_complete(asynchronous.aclose())
                continue
            from django.core.cache import caches

            cache = caches[subject.name]
            cache.close()
            loop.run_until_complete(cache.aclose())

    def forget(self) -> None:
        """Drop this process's shared pools and metrics, so nothing calls Redis once it stops.

        Without this, django_tiercache would push its metric counters at exit into a
        Redis that is already gone, and log that it could not.
        """
        from tiercache import registry

        registry.reset()
        try:
            from django_tiercache.metrics import reset_metrics_registry
        except ImportError:
            return
        reset_metrics_registry()


@functools.cache
def our_backend_error() -> str | None:
    """Return why our Django backend cannot be benchmarked, or None when it can."""
    from django.core.cache import caches

    probe = "tiercache-benchmarks:probe"
    try:
        for subject in (TIERED, TIERED_L2):
            cache = caches[subject.name]
            cache.set(probe, VALUE_STR)
            if cache.get(probe) != VALUE_STR:
                return f"{subject.name}: a value read back differs from the one written"
            cache.delete(probe)
    # It is being written while this harness runs: whatever breaks, leave it out and say why.
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


@functools.cache
def _core(url: str) -> tuple[Any, Any]:
    """Return this process's core caches on `url`, one sync and one async, shared by threads."""
    from tiercache import AsyncTieredCache, TieredCache

    return TieredCache.from_url(url), AsyncTieredCache.from_url(url)

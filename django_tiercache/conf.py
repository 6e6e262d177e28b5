"""App-level settings: `settings.TIERCACHE`, declared once here with their defaults."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = ["APP_DEFAULTS", "AppSettings", "app_settings"]

#: Dotted path of the middleware, as it appears in `settings.MIDDLEWARE`.
MIDDLEWARE_PATH = "django_tiercache.middleware.CacheMetricsMiddleware"
#: Dotted path of the cache backend, as it appears in `settings.CACHES`.
BACKEND_PATH = "django_tiercache.backend.TieredCache"


@dataclass(frozen=True)
class AppSettings:
    """`settings.TIERCACHE`, with upper-case keys as in settings."""

    #: Add a `Server-Timing` header with the request's cache time and hits/misses.
    SERVER_TIMING: bool = False
    #: Prefix of the Redis hashes that hold every process's metric counters.
    METRICS_KEY_PREFIX: str = "tiercache:metrics:"
    #: Bearer token that opens `django_tiercache.views.metrics` (None: no token).
    METRICS_TOKEN: str | None = None
    #: Client addresses or networks (CIDR) allowed to read `views.metrics` (empty: any).
    #: With neither this nor METRICS_TOKEN set, the view is closed (404).
    METRICS_ALLOWED_IPS: tuple[str, ...] = ()


APP_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(AppSettings)}


@functools.cache
def app_settings() -> AppSettings:
    """Return `settings.TIERCACHE` over the defaults (unknown keys are left to the checks)."""
    given: dict[str, Any] = dict(getattr(settings, "TIERCACHE", None) or {})
    if isinstance(given.get("METRICS_ALLOWED_IPS"), list | tuple):
        given["METRICS_ALLOWED_IPS"] = tuple(given["METRICS_ALLOWED_IPS"])
    return AppSettings(**{name: value for name, value in given.items() if name in APP_DEFAULTS})


@receiver(setting_changed)
def _forget_app_settings(*, setting: str, **kwargs: object) -> None:
    if setting == "TIERCACHE":
        app_settings.cache_clear()

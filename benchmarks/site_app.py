"""The Django site `benchmarks.site` serves under gunicorn: views with 20 L1 hits, one without.

Configured by environment: BENCH_CACHE = "tiercache" (our backend, L1 ahead of Redis),
"django-redis", or "locmem"; BENCH_REDIS_URL; BENCH_MIDDLEWARE = "1" puts
`CacheMetricsMiddleware` first. Used as ``DJANGO_SETTINGS_MODULE=benchmarks.site_app``
and ``gunicorn benchmarks.site_app:application``.
"""

from __future__ import annotations

import os

from django.core.cache import cache, caches
from django.http import HttpRequest, HttpResponse
from django.urls import path

KEYS = [f"user:{n}" for n in range(20)]

SECRET_KEY = "benchmark-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["django_tiercache"]
USE_TZ = True
DATABASES: dict[str, object] = {}
MIDDLEWARE = (
    ["django_tiercache.middleware.CacheMetricsMiddleware"]
    if os.environ.get("BENCH_MIDDLEWARE", "1") == "1"
    else []
)
_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_BACKENDS = {
    "tiercache": {
        "BACKEND": "django_tiercache.backend.TieredCache",
        "LOCATION": _REDIS,
        "OPTIONS": {"METRICS_PUSH_INTERVAL": 5.0},
    },
    "django-redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": _REDIS},
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
CACHES = {"default": _BACKENDS[os.environ.get("BENCH_CACHE", "tiercache")]}
TIERCACHE: dict[str, object] = {}


def cached(request: HttpRequest) -> HttpResponse:
    """Read 20 keys (L1 hits for tiercache once warm); fill any that are missing."""
    found = 0
    for key in KEYS:
        value = cache.get(key)
        if value is None:
            cache.set(key, {"id": key, "name": "Ada"}, 3600)
        else:
            found += 1
    return HttpResponse(f"{found} found")


def cached_bound(request: HttpRequest) -> HttpResponse:
    """The same 20 reads through `caches["default"]`, looked up once for the request.

    `cache.get` goes through Django's `cache` proxy, which asks `caches` (an asgiref
    `Local`) for the backend on every call; this measures the cache without that.
    """
    bound = caches["default"]
    found = 0
    for key in KEYS:
        value = bound.get(key)
        if value is None:
            bound.set(key, {"id": key, "name": "Ada"}, 3600)
        else:
            found += 1
    return HttpResponse(f"{found} found")


def plain(request: HttpRequest) -> HttpResponse:
    """The same response without touching any cache."""
    return HttpResponse(f"{len(KEYS)} found")


urlpatterns = [
    path("cached/", cached),
    path("cached-bound/", cached_bound),
    path("plain/", plain),
]


def _application() -> object:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", __name__)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


application = _application()

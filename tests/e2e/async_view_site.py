"""A one-view Django site served by gunicorn in tests/e2e/test_async_view_under_wsgi.py.

The view is async; under WSGI Django runs it on a fresh event loop per request. The cache
is the tiered backend with L1 off, so every request goes to Redis on that loop's client.
LOCATION comes from TIERCACHE_TEST_REDIS_URL.
"""

from __future__ import annotations

import os

from django.conf import settings

settings.configure(
    SECRET_KEY="django-tiercache-e2e-not-secret",
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    INSTALLED_APPS=["django_tiercache"],
    MIDDLEWARE=["django_tiercache.middleware.CacheMetricsMiddleware"],
    ROOT_URLCONF=__name__,
    CACHES={
        "default": {
            "BACKEND": "django_tiercache.backend.TieredCache",
            "LOCATION": os.environ["TIERCACHE_TEST_REDIS_URL"],
            "OPTIONS": {
                "L1_MAXSIZE": 0,
                "METRICS_PUSH_INTERVAL": 3600.0,
                # Generous: the test machine is shared; a timeout would lose a count.
                "CONNECT_TIMEOUT": 5.0,
                "SOCKET_TIMEOUT": 5.0,
            },
        }
    },
)

from django.core.cache import cache  # noqa: E402 - needs the settings configured above
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def counted(request: HttpRequest) -> HttpResponse:
    """Count the visit in the cache on this request's event loop; answer pid and count."""
    await cache.aadd("e2e:visits", 0)
    visits = await cache.aincr("e2e:visits")
    return HttpResponse(f"{os.getpid()} {visits}")


urlpatterns = [path("", counted)]

application = get_wsgi_application()

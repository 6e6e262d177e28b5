"""Views the middleware tests call: each uses the cache in known namespaces."""

from __future__ import annotations

import json

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

from django_tiercache.metrics import metrics_for


def user_and_provider(request: HttpRequest) -> HttpResponse:
    """Miss then hit `user:1`, miss `provider:9`; report what the process counted meanwhile."""
    cache.get("user:1")
    cache.set("user:1", {"name": "Ada"})
    cache.get("user:1")
    cache.get("provider:9")
    during = metrics_for("default").snapshot()
    return JsonResponse({"during": dict(during)})


async def async_user(request: HttpRequest) -> HttpResponse:
    """The async twin: miss then hit `user:2`, miss `accounts:2`."""
    await cache.aget("user:2")
    await cache.aset("user:2", {"name": "Grace"})
    await cache.aget("user:2")
    await cache.aget("accounts:2")
    during = metrics_for("default").snapshot()
    return HttpResponse(json.dumps({"during": dict(during)}), content_type="application/json")


def accounts(request: HttpRequest) -> HttpResponse:
    """Miss `accounts:1`, then cache it."""
    if cache.get("accounts:1") is None:
        cache.set("accounts:1", [1, 2])
    return HttpResponse("accounts")


def no_cache(request: HttpRequest) -> HttpResponse:
    """Use no cache at all."""
    return HttpResponse("nothing cached")


def l1_user(request: HttpRequest) -> HttpResponse:
    """Read `user:1` (the test put it in L1 first)."""
    return JsonResponse({"user": cache.get("user:1")})

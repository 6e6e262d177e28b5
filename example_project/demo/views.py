"""Pages that cache in the namespaces `user`, `provider` and `accounts`."""

from __future__ import annotations

import random
import time

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from example_project.demo import data

#: Seconds a cached record lives (in Redis; L1 copies live at most L1_TTL).
RECORD_TTL = 120


def index(request: HttpRequest) -> HttpResponse:
    """List the demo pages."""
    return render(request, "demo/index.html", {"users": range(1, 9), "providers": range(1, 5)})


def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    """Show a user, cached as `user:<id>`, and their provider, cached as `provider:<id>`."""
    started = time.perf_counter()
    user = cache.get_or_set(f"user:{user_id}", lambda: data.load_user(user_id), RECORD_TTL)
    provider_id = int(user["provider_id"])
    provider = cache.get_or_set(
        f"provider:{provider_id}", lambda: data.load_provider(provider_id), RECORD_TTL
    )
    return render(
        request,
        "demo/user.html",
        {"user": user, "provider": provider, "elapsed_ms": _ms_since(started)},
    )


async def provider_detail(request: HttpRequest, provider_id: int) -> HttpResponse:
    """Show a provider, cached as `provider:<id>` (an async view: native async cache calls)."""
    started = time.perf_counter()
    key = f"provider:{provider_id}"
    provider = await cache.aget(key)
    if provider is None:
        provider = data.load_provider(provider_id)
        await cache.aset(key, provider, RECORD_TTL)
    return render(
        request, "demo/provider.html", {"provider": provider, "elapsed_ms": _ms_since(started)}
    )


def accounts(request: HttpRequest, user_id: int) -> HttpResponse:
    """Show a user's accounts, cached as `accounts:<user id>`."""
    started = time.perf_counter()
    rows = cache.get_or_set(f"accounts:{user_id}", lambda: data.load_accounts(user_id), RECORD_TTL)
    return render(
        request,
        "demo/accounts.html",
        {"user_id": user_id, "accounts": rows, "elapsed_ms": _ms_since(started)},
    )


def simulate(request: HttpRequest) -> HttpResponse:
    """Look up 60 random records, as a burst of traffic would, and say how it went."""
    started = time.perf_counter()
    rng = random.Random()
    found = 0
    for _ in range(60):
        kind, ident = rng.choice(["user", "provider", "accounts"]), rng.randint(1, 12)
        key = f"{kind}:{ident}"
        if cache.get(key) is not None:
            found += 1
        else:
            loader = {"user": data.load_user, "provider": data.load_provider}.get(kind)
            value = loader(ident) if loader else data.load_accounts(ident)
            cache.set(key, value, RECORD_TTL)
    return render(request, "demo/simulate.html", {"found": found, "elapsed_ms": _ms_since(started)})


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)

"""`CacheMetricsMiddleware`: one commit of each request's cache use, attributed to its view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from django_tiercache.conf import app_settings
from django_tiercache.scope import RequestScope, request_scope

__all__ = ["CacheMetricsMiddleware"]

_SyncGetResponse = Callable[[HttpRequest], HttpResponseBase]
_AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class CacheMetricsMiddleware:
    """Count each request's cache use per namespace and view, and commit it in one step.

    Put it first in `MIDDLEWARE`, so that what other middleware caches (sessions...)
    counts too. It never talks to Redis: each process's pusher thread does. With `TIERCACHE = {"SERVER_TIMING": True}` each response gets a
    `Server-Timing` header with the request's cache time, hits and misses.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: _SyncGetResponse | _AsyncGetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        get_response: _SyncGetResponse = self.get_response  # type: ignore[assignment]
        with request_scope() as scope:
            try:
                response = get_response(request)
            finally:
                _commit(scope, request)
        _add_server_timing(scope, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: _AsyncGetResponse = self.get_response  # type: ignore[assignment]
        with request_scope() as scope:
            try:
                response = await get_response(request)
            finally:
                _commit(scope, request)
        _add_server_timing(scope, response)
        return response


def _commit(scope: RequestScope, request: HttpRequest) -> None:
    match = getattr(request, "resolver_match", None)
    scope.commit(match.view_name if match is not None else None)


def _add_server_timing(scope: RequestScope, response: HttpResponseBase) -> None:
    if not app_settings().SERVER_TIMING:
        return
    totals = scope.totals()
    description = (
        f"{totals['hits']} hits ({totals['l1_hits']} L1, {totals['l2_hits']} L2), "
        f"{totals['misses']} misses, {totals['errors']} errors"
    )
    # `dur`: the request's time waiting for Redis (`AliasMetrics.record_latency`); L1
    # hits are not timed (a clock read would cost a fair share of a hit).
    duration = f";dur={scope.cache_seconds * 1000:.3f}" if scope.cache_seconds else ""
    entries = [
        f'cache{duration};desc="{description}"',
        f'cache-hits;desc="{totals["hits"]}"',
        f'cache-misses;desc="{totals["misses"]}"',
    ]
    existing = response.headers.get("Server-Timing")
    response.headers["Server-Timing"] = ", ".join([existing, *entries] if existing else entries)

"""The stats page: a changelist without a table, rendering every tiered cache's figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from django_tiercache.charts import charts_of
from django_tiercache.conf import MIDDLEWARE_PATH
from django_tiercache.contract import tiered_aliases, tiered_cache
from django_tiercache.metrics import metrics_of
from django_tiercache.models import CacheStats
from django_tiercache.report import alias_reports, report_json

__all__ = ["CacheStatsAdmin"]

RESET_PERMISSION = "django_tiercache.reset_cachestats"
FLUSH_PERMISSION = "django_tiercache.flush_cachestats"


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[CacheStats]
else:  # ModelAdmin is generic only in the type stubs
    _ModelAdmin = admin.ModelAdmin


@admin.register(CacheStats)
class CacheStatsAdmin(_ModelAdmin):
    """Shows the caches' figures; resets metrics and flushes namespaces on POST."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CacheStats | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CacheStats | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # Only the changelist: the add/change/history views would query a table that does not exist.
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name=f"{name}_changelist"),
            path("json/", self.admin_site.admin_view(self.json_view), name=f"{name}_json"),
        ]

    def json_view(self, request: HttpRequest) -> HttpResponse:
        """Return the page's figures as JSON (same permission as the page)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse({"caches": [report_json(report) for report in alias_reports()]})

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._act(request)
        reports = alias_reports()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Cache statistics",
            "subtitle": None,
            "reports": reports,
            "sections": [(report, charts_of(report.minutes)) for report in reports],
            "refresh": _refresh_seconds(request),
            "can_reset": request.user.has_perm(RESET_PERMISSION),
            "can_flush": request.user.has_perm(FLUSH_PERMISSION),
            "middleware_installed": MIDDLEWARE_PATH in settings.MIDDLEWARE,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_tiercache/cachestats.html", context)

    def _act(self, request: HttpRequest) -> HttpResponse:
        action = request.POST.get("action", "")
        alias = request.POST.get("alias", "")
        if action not in ("reset", "flush") or alias not in tiered_aliases():
            return HttpResponseBadRequest("Unknown action or cache alias.")
        if action == "reset":
            if not request.user.has_perm(RESET_PERMISSION):
                raise PermissionDenied
            problem = metrics_of(tiered_cache(alias), alias).reset_site()
            if problem is None:
                messages.success(request, f"Metrics of cache “{alias}” reset in every process.")
            else:
                messages.warning(
                    request, f"Metrics of cache “{alias}” reset in this process only: {problem}"
                )
        else:
            if not request.user.has_perm(FLUSH_PERMISSION):
                raise PermissionDenied
            namespace = request.POST.get("namespace", "").strip()
            if not namespace:
                messages.error(request, "Give the namespace to flush.")
            else:
                try:
                    deleted = tiered_cache(alias).flush_namespace(namespace)
                except Exception as error:  # Redis trouble must not turn the page into a 500
                    messages.error(request, f"Could not flush “{namespace}” of “{alias}”: {error}")
                else:
                    messages.success(
                        request,
                        f"Flushed namespace “{namespace}” of cache “{alias}”: {deleted} keys deleted.",
                    )
        return HttpResponseRedirect(request.path)


def _refresh_seconds(request: HttpRequest) -> int | None:
    """Return the auto-refresh period asked for in the query string (5..300 s), if any."""
    try:
        seconds = int(request.GET.get("refresh", ""))
    except ValueError:
        return None
    return min(max(seconds, 5), 300)

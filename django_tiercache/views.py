"""`metrics`: the Prometheus scrape endpoint, closed unless a token or addresses open it.

Mount it in `urls.py`: ``path("metrics", django_tiercache.views.metrics)``. It needs
`prometheus_client` (``pip install tiercache[prometheus]``).
"""

from __future__ import annotations

import hmac
import ipaddress

from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET

from django_tiercache.conf import AppSettings, app_settings

__all__ = ["metrics"]


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the site's cache figures in Prometheus's text format, to allowed scrapers."""
    config = app_settings()
    if config.METRICS_TOKEN is None and not config.METRICS_ALLOWED_IPS:
        raise Http404("The metrics endpoint is closed: set TIERCACHE['METRICS_TOKEN'].")
    if not _allowed(request, config):
        return HttpResponseForbidden("Not allowed to read the metrics.")
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from django_tiercache.prometheus import TiercacheCollector
    except ImportError as error:  # the extra is optional
        raise ImproperlyConfigured(
            "django_tiercache.views.metrics needs prometheus_client: "
            "pip install 'tiercache[prometheus]'"
        ) from error
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TiercacheCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _allowed(request: HttpRequest, config: AppSettings) -> bool:
    """Return whether the request passes every guard that is configured."""
    if config.METRICS_TOKEN is not None:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {config.METRICS_TOKEN}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return False
    if config.METRICS_ALLOWED_IPS:
        try:
            client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        networks = [ipaddress.ip_network(net, strict=False) for net in config.METRICS_ALLOWED_IPS]
        if not any(client in network for network in networks):
            return False
    return True

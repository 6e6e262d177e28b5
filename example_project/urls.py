"""URLs of the example site: the demo pages, the admin (with the cache stats page), /metrics."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

import django_tiercache.views

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus scrapes this (bearer token: see TIERCACHE["METRICS_TOKEN"] in settings).
    path("metrics", django_tiercache.views.metrics, name="metrics"),
    path("", include("example_project.demo.urls")),
]

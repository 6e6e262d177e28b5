"""URLs of the django_tiercache tests: the admin and a few views that use the cache."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

import django_tiercache.views
from tests.django_tiercache import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", django_tiercache.views.metrics, name="metrics"),
    path("user-and-provider/", views.user_and_provider, name="user-and-provider"),
    path("async-user/", views.async_user, name="async-user"),
    path("accounts/", views.accounts, name="accounts"),
    path("no-cache/", views.no_cache, name="no-cache"),
    path("l1-user/", views.l1_user, name="l1-user"),
]

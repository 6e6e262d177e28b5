"""The demo app: pages that cache users, providers and accounts."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Pages caching in the namespaces `user`, `provider` and `accounts`."""

    name = "example_project.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"

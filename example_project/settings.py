"""Settings of the example site: one tiered cache, the metrics middleware, the admin page."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# An example site, never deployed: the key only signs this machine's sessions and pickles.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "tiercache-example-not-a-secret-0123456789abcdef")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tiercache",
    "example_project.demo",
]

MIDDLEWARE = [
    # First, so that it also counts what the other middleware caches.
    "django_tiercache.middleware.CacheMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TIERCACHE_EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

# `run.sh --cluster` and `--sentinel` name the topology (see docs/configuration.md):
# TIERCACHE_REDIS_CLUSTER=1, or TIERCACHE_REDIS_SENTINELS="host:port,host:port,...".
_TOPOLOGY: dict[str, object] = {}
if os.environ.get("TIERCACHE_REDIS_CLUSTER"):
    _TOPOLOGY["CLUSTER"] = True
if _sentinels := os.environ.get("TIERCACHE_REDIS_SENTINELS"):
    _TOPOLOGY["SENTINELS"] = [
        [host, int(port)] for host, port in (item.rsplit(":", 1) for item in _sentinels.split(","))
    ]

# `manage.py tiercache_demo` (run.sh) sets TIERCACHE_REDIS_URL to the Redis it started or
# was given. Without it the cache is L1-only: the example never writes into a Redis that
# nobody named.
CACHES = {
    "default": {
        "BACKEND": "django_tiercache.backend.TieredCache",
        "LOCATION": os.environ.get("TIERCACHE_REDIS_URL", ""),
        "TIMEOUT": 300,
        "OPTIONS": {
            "L1_MAXSIZE": 5_000,
            "L1_TTL": 30.0,
            "METRICS_PUSH_INTERVAL": 2.0,
            **_TOPOLOGY,
        },
    }
}

TIERCACHE = {
    "SERVER_TIMING": True,
    # `manage.py tiercache_demo` makes a token and prints it; without one /metrics is closed.
    "METRICS_TOKEN": os.environ.get("TIERCACHE_METRICS_TOKEN") or None,
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_tiercache": {"handlers": ["console"], "level": "WARNING"}},
}

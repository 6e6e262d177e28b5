"""Django settings of the django_tiercache tests (LOCATION is set per test to a private Redis)."""

from __future__ import annotations

import os

SECRET_KEY = "django-tiercache-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tiercache",
]

MIDDLEWARE = [
    "django_tiercache.middleware.CacheMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.django_tiercache.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

#: Replaced per test by the `redis_url` of the session's private server.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
CACHES = {
    "default": {
        "BACKEND": "django_tiercache.backend.TieredCache",
        "LOCATION": os.environ.get("TIERCACHE_TEST_REDIS_URL", UNREACHABLE_REDIS),
        "OPTIONS": {"METRICS_PUSH_INTERVAL": 3600.0},
    }
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

"""System checks, run the way `manage.py check` runs them: through `run_checks()`."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.cache import caches
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tests.django_tiercache.django_setup import tiered_caches
from tests.redis_server import RedisServer

BACKEND = "django_tiercache.backend.TieredCache"


def _ours(**settings: Any) -> list[CheckMessage]:
    with override_settings(**settings):
        messages = run_checks(tags=["django_tiercache"])
    assert all(str(message.id).startswith("django_tiercache.") for message in messages)
    return messages


def _ids(**settings: Any) -> list[str]:
    return [str(message.id) for message in _ours(**settings)]


def _cache(location: object = "redis://127.0.0.1:6379/0", **config: Any) -> dict[str, Any]:
    return {"default": {"BACKEND": BACKEND, "LOCATION": location, **config}}


def test_the_test_settings_pass_every_check(redis_url: str) -> None:
    with override_settings(CACHES=tiered_caches(redis_url)):
        assert run_checks() == []


@pytest.mark.parametrize(
    "location",
    [
        "memcached://127.0.0.1:11211",
        "127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:notaport/0",
        "redis://a:6379,b:6379/0",
        ["redis://127.0.0.1:6379/0", "127.0.0.1:6380"],
        "not-a-url://x",
        "redis://127.0.0.1:6379/zero",
    ],
)
def test_a_bad_location_is_an_error(location: object) -> None:
    (message,) = _ours(CACHES=_cache(location))

    assert "CACHES['default']['LOCATION']" in message.msg
    assert message.id == "django_tiercache.E001"
    assert message.is_serious()
    assert "redis://127.0.0.1:6379/0" in str(message.hint)
    assert message.obj == "default"


@pytest.mark.parametrize(
    "location",
    ["redis://:pw@10.0.0.1:6380/2", "rediss://r.example.com/0", "unix:///tmp/redis.sock?db=1"],
)
def test_good_locations_pass(location: str) -> None:
    assert _ids(CACHES=_cache(location)) == []


@pytest.mark.parametrize("location", ["", None])
def test_no_location_is_a_warning_about_an_l1_only_cache(location: object) -> None:
    (message,) = _ours(CACHES=_cache(location))

    assert message.id == "django_tiercache.W006"
    assert not message.is_serious()
    assert "L1-only" in message.msg


def test_an_unknown_option_is_an_error_that_suggests_the_right_key() -> None:
    (message,) = _ours(CACHES=_cache(OPTIONS={"L1_MAX_SIZE": 10}))

    assert message.id == "django_tiercache.E002"
    assert "'L1_MAX_SIZE'" in message.msg
    assert "Did you mean 'L1_MAXSIZE'?" in str(message.hint)


def test_lower_case_options_are_unknown_and_a_foreign_client_class_is_refused() -> None:
    assert _ids(CACHES=_cache(OPTIONS={"db": 1, "CLIENT_CLASS": "x"})) == [
        "django_tiercache.E010",
        "django_tiercache.E002",
    ]


def test_an_option_of_the_wrong_type_is_an_error() -> None:
    (message,) = _ours(CACHES=_cache(OPTIONS={"L1_MAXSIZE": "big"}))

    assert message.id == "django_tiercache.E003"
    assert "L1_MAXSIZE" in message.msg
    assert message.hint


def test_options_that_are_not_a_dict_are_an_error() -> None:
    assert _ids(CACHES=_cache(OPTIONS=["L1_MAXSIZE"])) == ["django_tiercache.E003"]


def test_a_serializer_that_cannot_be_imported_is_an_error() -> None:
    (message,) = _ours(CACHES=_cache(OPTIONS={"SERIALIZER": "nowhere.Serializer"}))

    assert message.id == "django_tiercache.E004"
    assert "nowhere.Serializer" in message.msg


def test_unknown_or_mistyped_app_settings_are_errors() -> None:
    assert _ids(TIERCACHE={"SERVER_TIMINGS": True}) == ["django_tiercache.E005"]
    assert _ids(TIERCACHE={"SERVER_TIMING": "yes"}) == ["django_tiercache.E005"]
    assert _ids(TIERCACHE=["SERVER_TIMING"]) == ["django_tiercache.E005"]
    assert _ids(TIERCACHE={"SERVER_TIMING": True}) == []


def test_a_missing_middleware_is_a_warning_while_the_admin_page_is_installed(settings: Any) -> None:
    middleware = [path for path in settings.MIDDLEWARE if "tiercache" not in path]

    (message,) = _ours(MIDDLEWARE=middleware)

    assert message.id == "django_tiercache.W001"
    assert not message.is_serious()
    assert "django_tiercache.middleware.CacheMetricsMiddleware" in str(message.hint)


def test_an_l1_ttl_longer_than_the_cache_timeout_is_a_warning() -> None:
    (message,) = _ours(CACHES=_cache(TIMEOUT=30, OPTIONS={"L1_TTL": 60.0}))

    assert message.id == "django_tiercache.W002"
    assert "60 s" in message.msg
    assert "30 s" in message.msg
    assert message.hint


@pytest.mark.parametrize(
    "config",
    [
        {"TIMEOUT": None, "OPTIONS": {"L1_TTL": 600.0}},  # never expires
        {"TIMEOUT": 30, "OPTIONS": {"L1_TTL": 60.0, "L1_MAXSIZE": 0}},  # no L1
        {"OPTIONS": {"L1_TTL": 300.0}},  # Django's default TIMEOUT is 300
    ],
)
def test_l1_ttl_within_timeout_or_without_l1_passes(config: dict[str, Any]) -> None:
    assert _ids(CACHES=_cache(**config)) == []


def test_l1_without_invalidation_is_a_warning() -> None:
    assert _ids(CACHES=_cache(OPTIONS={"INVALIDATION": False})) == ["django_tiercache.W003"]
    assert _ids(CACHES=_cache(OPTIONS={"INVALIDATION": False, "L1_MAXSIZE": 0})) == []


def test_slow_socket_timeouts_are_warnings() -> None:
    ids = _ids(CACHES=_cache(OPTIONS={"CONNECT_TIMEOUT": 5.0, "SOCKET_TIMEOUT": 10}))

    assert ids == ["django_tiercache.W004"] * 2


def test_an_installed_app_without_a_tiered_cache_is_a_warning() -> None:
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    assert _ids(CACHES=caches) == ["django_tiercache.W005"]


def test_every_message_has_a_hint() -> None:
    messages = _ours(
        CACHES={
            **_cache("memcached://x", TIMEOUT=1, OPTIONS={"NOPE": 1, "INVALIDATION": False}),
            "other": {"BACKEND": BACKEND, "LOCATION": "redis://x/0", "OPTIONS": {"L1_TTL": "x"}},
        },
        TIERCACHE={"NOPE": 1},
        MIDDLEWARE=[],
    )

    assert {str(message.id) for message in messages} >= {
        "django_tiercache.E001",
        "django_tiercache.E002",
        "django_tiercache.E003",
        "django_tiercache.E005",
        "django_tiercache.W001",
        "django_tiercache.W003",
    }
    assert all(message.hint for message in messages)


@pytest.mark.parametrize(
    "location",
    [
        "not-a-url://x",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?socket_timeout=abc",  # redis-py refuses its query
    ],
)
def test_manage_py_check_reports_a_bad_location_instead_of_crashing(location: str) -> None:
    # Django's own cache checks build every cache first: building must not raise.
    with override_settings(CACHES=_cache(location)):
        ids = [str(message.id) for message in run_checks()]
        with pytest.raises(SystemCheckError, match=r"django_tiercache\.E001"):
            call_command("check", stdout=StringIO(), stderr=StringIO())

    assert ids == ["django_tiercache.E001"]


def test_manage_py_check_reports_bad_options_instead_of_crashing() -> None:
    with override_settings(CACHES=_cache(OPTIONS={"L1_SIZE": 1, "L1_TTL": "x"})):
        ids = sorted(str(message.id) for message in run_checks())

    assert ids == ["django_tiercache.E002", "django_tiercache.E003"]


def test_using_a_cache_with_a_bad_location_raises_an_error_naming_the_setting() -> None:
    with (
        override_settings(CACHES=_cache("not-a-url://x")),
        pytest.raises(ImproperlyConfigured, match=r"CACHES\['default'\]\['LOCATION'\]"),
    ):
        caches["default"].get("user:1")


def test_an_l1_only_cache_without_l1_is_an_error() -> None:
    (message,) = _ours(CACHES=_cache(None, OPTIONS={"L1_MAXSIZE": 0}))[1:]

    assert message.id == "django_tiercache.E003"
    assert "at least one tier" in message.msg


@pytest.mark.parametrize(
    "location", ["redis://127.0.0.1:7000/3", "redis://:pw@127.0.0.1:7000/1", "redis://h:1?db=2"]
)
def test_a_cluster_with_a_database_other_than_0_is_named(location: str) -> None:
    messages = _ours(CACHES=_cache(location, OPTIONS={"CLUSTER": True}))

    (message,) = [m for m in messages if m.id == "django_tiercache.E006"]
    assert message.is_serious()
    assert "database 0 only" in message.msg
    assert "pw" not in message.msg
    assert '"CLUSTER": True' in str(message.hint)
    assert message.obj == "default"


@pytest.mark.parametrize(
    "options",
    [
        {"CLUSTER": True, "SENTINELS": [["127.0.0.1", 26379]]},
        {"SENTINELS": [["127.0.0.1", "26379"]]},
        {"SENTINEL_KWARGS": {"password": "x"}},
    ],
)
def test_a_topology_that_does_not_fit_is_named(options: dict[str, Any]) -> None:
    messages = _ours(CACHES=_cache("redis://mymaster/0", OPTIONS=options))

    assert "django_tiercache.E006" in [m.id for m in messages]


def test_a_standalone_location_has_no_topology_error() -> None:
    assert "django_tiercache.E006" not in _ids(CACHES=_cache("redis://127.0.0.1:6379/3"))


def test_a_url_option_redis_py_refuses_raises_an_error_naming_the_setting_on_use() -> None:
    with (
        override_settings(CACHES=_cache("redis://:pw@127.0.0.1:1/0?socket_timeout=abc")),
        pytest.raises(ImproperlyConfigured, match=r"CACHES\['default'\]\['LOCATION'\]") as raised,
    ):
        caches["default"].get("user:1")

    assert "socket_timeout" in str(raised.value)
    assert "pw" not in str(raised.value)


def test_a_redis_refusing_tracking_is_a_deploy_warning_naming_broadcast() -> None:
    with RedisServer("--rename-command", "CLIENT", '""') as server:
        config = {"BACKEND": "django_tiercache.backend.TieredCache", "LOCATION": server.url}
        with override_settings(CACHES={"default": config}):
            found = [
                message
                for message in run_checks(include_deployment_checks=True)
                if message.id == "django_tiercache.W007"
            ]
            assert len(found) == 1
            assert "broadcast" in found[0].msg
            assert found[0].hint
            caches["default"].close()


def test_a_redis_with_tracking_raises_no_tracking_warning(redis_url: str) -> None:
    config = {"BACKEND": "django_tiercache.backend.TieredCache", "LOCATION": redis_url}
    with override_settings(CACHES={"default": config}):
        ids = [m.id for m in run_checks(include_deployment_checks=True)]
        assert "django_tiercache.W007" not in ids


def _two_modes(location: str) -> dict[str, Any]:
    tracking = {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": {"INVALIDATION": True}}
    broadcast = {**tracking, "OPTIONS": {"INVALIDATION": "broadcast"}}
    quiet = {**tracking, "OPTIONS": {"INVALIDATION": False}}
    return {"default": tracking, "pages": broadcast, "quiet": quiet}


def test_two_aliases_asking_one_redis_for_two_invalidation_modes_are_named_together() -> None:
    messages = _ours(CACHES=_two_modes("redis://127.0.0.1:6379/0"))

    [message] = [m for m in messages if m.id == "django_tiercache.E007"]
    assert "CACHES['pages']" in message.msg
    assert "CACHES['default']" in message.msg
    assert message.hint


def test_using_either_of_two_modes_on_one_redis_raises_naming_both(
    private_redis: RedisServer,
) -> None:
    # Whichever is used first: the error does not depend on the order of use.
    with override_settings(CACHES=_two_modes(private_redis.url)):
        assert caches["quiet"].get("user:1") is None  # off joins either mode
        with pytest.raises(ImproperlyConfigured, match=r"'pages'.*'broadcast'.*'default'"):
            caches["pages"].get("user:1")
        with pytest.raises(ImproperlyConfigured, match=r"'default'.*'tracking'.*'pages'"):
            caches["default"].get("user:1")

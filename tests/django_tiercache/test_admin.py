"""The admin stats page: who may see it and act on it, what it shows, CSRF."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse

from django_tiercache.metrics import metrics_for, request_scope
from tests.redis_server import RedisServer
from tests.redis_topology import RedisClusterServers, RedisSentinelServers

pytestmark = pytest.mark.django_db

URL = "/admin/django_tiercache/cachestats/"


def _staff(django_user_model: Any, *permissions: str) -> Client:
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def _use_cache() -> None:
    cache.set("user:1", "Ada")
    cache.get("user:1")
    cache.get("user:2")
    cache.get("provider:7")
    cache.set("accounts:1", [1, 2])
    cache.get("accounts:1")


def test_the_page_lives_at_its_documented_url() -> None:
    assert reverse("admin:django_tiercache_cachestats_changelist") == URL


def test_anonymous_users_are_sent_to_the_login_page(client: Client) -> None:
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_view_permission_are_refused(django_user_model: Any) -> None:
    client = _staff(django_user_model)

    assert client.get(URL).status_code == 403
    assert client.post(URL, {"action": "reset", "alias": "default"}).status_code == 403


def test_the_view_permission_shows_namespaces_but_no_action(django_user_model: Any) -> None:
    _use_cache()
    client = _staff(django_user_model, "view_cachestats")

    response = client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    for namespace in ("user", "provider", "accounts"):
        assert f'data-namespace="{namespace}"' in page
    assert 'value="reset"' not in page
    assert 'value="flush"' not in page


def test_the_page_extends_the_admin_and_shows_health_and_configuration(
    admin_client: Client,
) -> None:
    _use_cache()

    response = admin_client.get(URL)

    page = response.content.decode()
    assert "admin/base_site.html" in [template.name for template in response.templates]
    assert "Cache statistics" in page
    assert "reachable" in page
    assert "Redis unreachable" not in page
    assert "L1 (this process)" in page
    assert "redis://127.0.0.1" in page
    assert 'name="viewport"' in page  # the admin's responsive layout


def test_the_page_counts_hits_by_tier_misses_and_hit_rate(admin_client: Client) -> None:
    _use_cache()
    stats = metrics_for("default").get_stats("user")

    reports = admin_client.get(URL).context["reports"]

    (report,) = reports
    assert report.site_wide
    user = report.namespaces["user"]
    assert user["hits"] == stats["hits"] == 1
    assert user["misses"] == 1
    assert user["l1_hits"] + user["l2_hits"] == 1
    assert user["hit_rate"] == 0.5
    assert report.namespaces["provider"]["misses"] == 1


def test_the_page_shows_which_namespaces_each_view_used(admin_client: Client) -> None:
    Client().get("/user-and-provider/")
    Client().get("/user-and-provider/")

    page = admin_client.get(URL).content.decode()

    assert 'data-view="user-and-provider"' in page
    (report,) = admin_client.get(URL).context["reports"]
    (view,) = [view for view in report.views if view.view == "user-and-provider"]
    assert view.requests == 2
    assert list(view.namespaces) == ["provider", "user"]


def test_the_password_never_shows_in_the_page_or_its_json(
    admin_client: Client, use_caches: Any
) -> None:
    with RedisServer("--requirepass", "s3cret-pass") as server:
        use_caches(f"redis://:s3cret-pass@127.0.0.1:{server.port}/0")
        _use_cache()

        page = admin_client.get(URL).content.decode()
        data = admin_client.get(URL + "json/").content.decode()

    assert "s3cret-pass" not in page
    assert "s3cret-pass" not in data
    assert "Redis unreachable" not in page
    # The node was reached with the URL's password, and is shown by its address alone.
    assert _node_rows(page) == [(f"127.0.0.1:{server.port}", "primary", "yes", "closed")]


def _node_rows(page: str) -> list[tuple[str, str, str, str]]:
    """Return (address, role, healthy, breaker) of each row of the page's node table."""
    return re.findall(
        r'<tr data-node="([^"]+)" data-role="(\w+)" data-healthy="(\w+)" data-breaker="(\w*)"',
        page,
    )


def test_the_one_node_of_a_standalone_redis_is_shown_with_its_health(
    admin_client: Client, redis_url: str
) -> None:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]

    page = admin_client.get(URL).content.decode()
    (node,) = admin_client.get(URL + "json/").json()["caches"][0]["nodes"]

    assert "Redis nodes · standalone" in page
    assert _node_rows(page) == [(f"127.0.0.1:{port}", "primary", "yes", "closed")]
    assert node["address"] == f"127.0.0.1:{port}"
    assert node["role"] == "primary"
    assert node["healthy"] is True
    assert node["latency_ms"] > 0
    assert node["breaker"] == "closed"


def test_a_redis_that_stopped_is_shown_unhealthy_with_its_breaker_open(
    admin_client: Client, use_caches: Any, private_redis: RedisServer
) -> None:
    use_caches(private_redis.url)
    _use_cache()
    private_redis.kill()
    for i in range(3):  # misses that reach Redis: its breaker opens after the third
        assert cache.get(f"user:{i + 10}") is None

    response = admin_client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert _node_rows(page) == [(f"127.0.0.1:{private_redis.port}", "primary", "no", "open")]
    assert "Redis is unreachable" in page


def test_one_round_of_pings_serves_the_node_table_and_the_health_line(
    admin_client: Client, use_caches: Any, private_redis: RedisServer
) -> None:
    # No invalidation connection: its heartbeat PINGs would count too.
    use_caches(private_redis.url, INVALIDATION="off")
    _use_cache()
    with redis.Redis(port=private_redis.port) as server:
        server.config_resetstat()

        page = admin_client.get(URL).content.decode()

        pings = server.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
    assert _node_rows(page) == [(f"127.0.0.1:{private_redis.port}", "primary", "yes", "closed")]
    assert "Redis is unreachable" not in page
    assert pings == 1


def test_every_node_of_a_cluster_is_shown_with_its_role(
    admin_client: Client, use_caches: Any, redis_cluster: RedisClusterServers
) -> None:
    use_caches(redis_cluster.seed_url, CLUSTER=True)
    _use_cache()
    primaries = {f"127.0.0.1:{server.port}" for server in redis_cluster.primaries()}

    page = admin_client.get(URL).content.decode()
    (report,) = admin_client.get(URL + "json/").json()["caches"]

    rows = _node_rows(page)
    assert "Redis nodes · cluster" in page
    assert len(rows) == 6
    assert {address for address, *_ in rows} == {
        f"127.0.0.1:{port}" for _host, port in redis_cluster.startup_nodes
    }
    assert {address for address, role, *_ in rows if role == "primary"} == primaries
    assert [(role, healthy, breaker) for _, role, healthy, breaker in rows] == [
        ("primary", "yes", "closed")
    ] * 3 + [("replica", "yes", "")] * 3
    assert [(node["address"], node["role"]) for node in report["nodes"]] == [
        (address, role) for address, role, *_ in rows
    ]


def test_sentinel_shows_the_master_its_replica_and_the_sentinels(
    admin_client: Client, use_caches: Any, redis_sentinel: RedisSentinelServers
) -> None:
    use_caches(redis_sentinel.url, SENTINELS=[list(s) for s in redis_sentinel.sentinels])
    _use_cache()

    page = admin_client.get(URL).content.decode()

    assert "Redis nodes · sentinel" in page
    assert _node_rows(page) == [
        (f"127.0.0.1:{redis_sentinel.master().port}", "master", "yes", "closed"),
        *(
            (f"127.0.0.1:{server.port}", "replica", "yes", "")
            for server in redis_sentinel.replicas()
        ),
        *((f"{host}:{port}", "sentinel", "yes", "") for host, port in redis_sentinel.sentinels),
    ]


def test_an_unreachable_redis_is_shown_with_this_processes_figures(
    admin_client: Client, use_caches: Any, private_redis: RedisServer
) -> None:
    use_caches(private_redis.url)
    _use_cache()
    private_redis.kill()

    page = admin_client.get(URL).content.decode()

    assert "Redis unreachable" in page
    assert "Figures of this process only" in page
    assert 'data-namespace="user"' in page


def test_reset_needs_its_own_permission(django_user_model: Any) -> None:
    _use_cache()
    client = _staff(django_user_model, "view_cachestats", "flush_cachestats")

    response = client.post(URL, {"action": "reset", "alias": "default"})

    assert response.status_code == 403
    assert metrics_for("default").get_all_stats()


def test_reset_zeroes_every_processes_metrics(django_user_model: Any, redis_url: str) -> None:
    _use_cache()
    metrics_for("default").push()
    client = _staff(django_user_model, "view_cachestats", "reset_cachestats")

    response = client.post(URL, {"action": "reset", "alias": "default"}, follow=True)

    assert response.status_code == 200
    assert "reset in every process" in response.content.decode()
    assert metrics_for("default").get_all_stats() == {}
    with redis.Redis.from_url(redis_url) as client_:
        assert client_.exists("tiercache:metrics:{dj:default}:reset")
        assert not client_.exists("tiercache:metrics:{dj:default}")
    assert response.context["reports"][0].namespaces == {}


def test_flush_deletes_only_the_namespace_and_needs_its_permission(
    django_user_model: Any,
) -> None:
    _use_cache()
    viewer = _staff(django_user_model, "view_cachestats", "reset_cachestats")
    assert (
        viewer.post(URL, {"action": "flush", "alias": "default", "namespace": "user"}).status_code
        == 403
    )
    assert cache.get("user:1") == "Ada"

    django_user_model.objects.get(username="staff").user_permissions.add(
        Permission.objects.get(codename="flush_cachestats")
    )
    response = viewer.post(
        URL, {"action": "flush", "alias": "default", "namespace": "user"}, follow=True
    )

    assert response.status_code == 200
    assert "Flushed namespace “user”" in response.content.decode()
    assert cache.get("user:1") is None
    assert cache.get("accounts:1") == [1, 2]


def test_posts_without_a_csrf_token_are_refused(admin_user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(URL, {"action": "reset", "alias": "default"})

    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_posts_with_the_pages_csrf_token_are_accepted(admin_user: Any) -> None:
    _use_cache()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get(URL)
    token = client.cookies["csrftoken"].value

    response = client.post(
        URL, {"action": "reset", "alias": "default", "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 302
    assert metrics_for("default").get_all_stats() == {}


def test_unknown_actions_and_aliases_are_rejected(admin_client: Client) -> None:
    assert admin_client.post(URL, {"action": "drop", "alias": "default"}).status_code == 400
    assert admin_client.post(URL, {"action": "reset", "alias": "nope"}).status_code == 400


def test_the_admin_index_links_to_the_page(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert f'href="{URL}"' in page
    assert "Cache statistics" in page


def test_the_placeholder_model_has_no_table_and_no_object_pages() -> None:
    assert "django_tiercache_cachestats" not in connection.introspection.table_names()
    with pytest.raises(NoReverseMatch):
        reverse("admin:django_tiercache_cachestats_add")
    with pytest.raises(NoReverseMatch):
        reverse("admin:django_tiercache_cachestats_change", args=[1])


def test_the_permissions_exist_after_migrating() -> None:
    codenames = set(
        Permission.objects.filter(content_type__app_label="django_tiercache").values_list(
            "codename", flat=True
        )
    )

    assert codenames == {"view_cachestats", "reset_cachestats", "flush_cachestats"}


def test_the_page_draws_the_last_hour_and_the_workers(admin_client: Client) -> None:
    _use_cache()
    metrics_for("default").push()

    response = admin_client.get(URL)
    page = response.content.decode()

    for chart in ("lookups", "hit-rate", "errors", "latency"):
        assert f'data-chart="{chart}"' in page
    assert "<rect" in page  # this minute's lookups
    assert 'src="http' not in page, "nothing from another site (no CDN)"
    assert 'href="http' not in page
    (worker,) = response.context["reports"][0].workers
    assert worker.pid == os.getpid()
    assert f'data-worker="{worker.process}"' in page
    assert worker.l1_entries == 2
    assert not worker.stale


def test_a_worker_that_stopped_reporting_is_marked_stale(
    admin_client: Client, redis_url: str
) -> None:
    cache.get("user:1")
    metrics_for("default").push()
    with redis.Redis.from_url(redis_url) as client:
        key = "tiercache:metrics:{dj:default}:workers"
        (process, raw) = client.hgetall(key).popitem()
        report = json.loads(raw)
        report["at"] -= 20 * 3600  # the tests push hourly: stale after three hours
        client.hset(key, process, json.dumps(report))

    page = admin_client.get(URL).content.decode()

    assert 'class="tc-stale"' in page
    assert ">stale<" in page
    assert admin_client.get(URL).context["reports"][0].processes == 0


def test_error_kinds_are_columns_not_tooltips(admin_client: Client, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set("dj::1:provider:7", b"not a signed pickle")
    assert cache.get("provider:7") is None  # corrupt: a miss and an error

    page = admin_client.get(URL).content.decode()

    assert 'data-kind="CorruptData"' in page
    assert "title=" not in page.split('class="tc-namespaces"')[1].split("</table>")[0]


def test_hit_rate_counts_errors_and_shows_a_dash_without_lookups(admin_client: Client) -> None:
    with request_scope() as scope:
        cache.set("user:1", "x")  # a write: no lookup
    scope.commit("writer")

    (report,) = admin_client.get(URL).context["reports"]

    assert report.total_hit_rate == "—"
    page = admin_client.get(URL).content.decode()
    assert ">—<" in page
    metrics = metrics_for("default")
    metrics.record_hit("user")
    metrics.record_error("user", "CacheTimeout")
    (report,) = admin_client.get(URL).context["reports"]
    assert report.total_hit_rate == "50.0%"


def test_the_breaker_shows_outages_not_probes(admin_client: Client) -> None:
    cache.get("user:1")
    breaker = cache.breaker  # type: ignore[attr-defined]
    clock = [0.0]
    breaker._timer = lambda: clock[0]
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    for _ in range(4):  # four failed half-open probes: the same outage
        clock[0] += breaker.reset_timeout
        assert breaker.allow()
        breaker.record_failure()

    page = admin_client.get(URL).content.decode()

    assert breaker.times_opened == 5
    assert "1 outage in this process" in page


def test_the_json_endpoint_has_the_pages_figures(admin_client: Client) -> None:
    _use_cache()
    metrics_for("default").push()

    data = admin_client.get(URL + "json/").json()

    (alias,) = data["caches"]
    assert alias["alias"] == "default"
    assert alias["namespaces"]["user"]["misses"] == 1
    assert len(alias["minutes"]) == 60
    assert alias["workers"][0]["pid"] == os.getpid()
    assert alias["hit_rate"] == 2 / 4


def test_the_json_endpoint_needs_the_view_permission(django_user_model: Any) -> None:
    django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.login(username="staff", password="pw")

    assert client.get(URL + "json/").status_code == 403


def test_auto_refresh_is_a_toggle(admin_client: Client) -> None:
    assert 'http-equiv="refresh"' not in admin_client.get(URL).content.decode()

    page = admin_client.get(URL + "?refresh=10").content.decode()

    assert '<meta http-equiv="refresh" content="10">' in page
    assert "Stop auto-refresh" in page


def test_the_time_of_the_last_reset_is_shown(admin_client: Client) -> None:
    assert "Never reset" in admin_client.get(URL).content.decode()
    admin_client.post(URL, {"action": "reset", "alias": "default"})

    assert "Counting since the last reset, 20" in admin_client.get(URL).content.decode()


def test_a_quiet_hour_says_no_error_rather_than_no_data(admin_client: Client) -> None:
    assert "no data yet" in admin_client.get(URL).content.decode()
    _use_cache()
    metrics_for("default").push()

    page = admin_client.get(URL).content.decode()

    assert "no error in the hour" in page

"""Flushing a namespace with Redis down: the command and the admin page say it failed."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client

from tests.redis_server import RedisServer

URL = "/admin/django_tiercache/cachestats/"


@pytest.fixture
def redis_down(use_caches: Any, private_redis: RedisServer) -> None:
    """Point the cache at a Redis, fill it, then kill the Redis."""
    use_caches(private_redis.url)
    cache.set("user:1", "Ada")
    private_redis.kill()


@pytest.mark.usefixtures("redis_down")
def test_the_flush_command_fails_and_exits_non_zero_when_redis_is_down() -> None:
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError, match="Flush failed for: default"):
        call_command("tiercache", "flush", "--namespace", "user", stdout=out, stderr=err)

    assert "flushed" not in out.getvalue()
    assert "default: could not flush namespace 'user'" in err.getvalue()


@pytest.mark.django_db
@pytest.mark.usefixtures("redis_down")
def test_the_admin_flush_shows_an_error_when_redis_is_down(admin_client: Client) -> None:
    response = admin_client.post(
        URL, {"action": "flush", "alias": "default", "namespace": "user"}, follow=True
    )

    assert response.status_code == 200
    levels = [message.level_tag for message in response.context["messages"]]
    assert levels == ["error"]
    page = response.content.decode()
    assert "Could not flush “user” of “default”" in page
    assert "keys deleted" not in page

"""The Redis test servers behave as the fault tests rely on."""

from __future__ import annotations

import os
import socket

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redis_server import RedisServer, RedisServerError


def _client(url: str, password: str | None = None) -> redis.Redis:
    # No retries: a dead server must fail the first call, not after backoff.
    return redis.Redis.from_url(
        url,
        password=password,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=1,
        socket_timeout=1,
    )


def test_shared_server_answers_on_its_own_port(redis_url: str) -> None:
    with _client(redis_url) as client:
        assert client.ping() is True
    assert not redis_url.endswith(":6379/0")


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_with_an_empty_shared_server(redis_url: str, run: int) -> None:
    with _client(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", run)


def test_kill_makes_connections_fail_at_once(private_redis: RedisServer) -> None:
    with _client(private_redis.url) as client:
        assert client.ping() is True
        private_redis.kill()
        assert not private_redis.is_running()
        with pytest.raises(redis.ConnectionError):
            client.ping()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", private_redis.port), timeout=1).close()


def test_restart_after_kill_reuses_the_port_and_loses_the_data(
    private_redis: RedisServer,
) -> None:
    port, old_pid = private_redis.port, private_redis.pid
    with _client(private_redis.url) as client:
        client.set("key", "value")
        private_redis.kill()
        private_redis.restart()
        assert (private_redis.port, private_redis.is_running()) == (port, True)
        assert private_redis.pid != old_pid
        assert client.get("key") is None


def test_restart_after_stop_serves_again(private_redis: RedisServer) -> None:
    private_redis.stop()
    assert not private_redis.is_running()
    private_redis.restart()
    with _client(private_redis.url) as client:
        assert client.ping() is True


def test_extra_arguments_reach_the_server() -> None:
    with RedisServer("--requirepass", "s3cret") as server:
        with _client(server.url) as client, pytest.raises(redis.AuthenticationError):
            client.ping()
        with _client(server.url, password="s3cret") as client:
            assert client.ping() is True


def test_close_leaves_no_process_behind() -> None:
    server = RedisServer().start()
    pid = server.pid
    server.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_executable_says_how_to_install_it() -> None:
    with pytest.raises(RedisServerError, match=r"bash tests/run\.sh"):
        RedisServer(executable="no-such-redis-server").start()

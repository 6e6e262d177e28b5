"""`from_url(cluster=True)` and `from_url(sentinels=...)`: the options are checked up front."""

from __future__ import annotations

from typing import Any

import pytest

from tiercache import AsyncTieredCache, TieredCache

BUILDERS = [TieredCache.from_url, AsyncTieredCache.from_url]
SENTINELS = [("127.0.0.1", 26379)]


@pytest.mark.parametrize("from_url", BUILDERS, ids=["sync", "async"])
@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:7000/3", "redis://127.0.0.1:7000?db=2", "rediss://h:7000/1"]
)
def test_cluster_with_a_database_other_than_0_is_refused(from_url: Any, url: str) -> None:
    with pytest.raises(ValueError, match="Redis Cluster has database 0 only"):
        from_url(url, cluster=True)


@pytest.mark.parametrize("from_url", BUILDERS, ids=["sync", "async"])
def test_cluster_error_never_shows_the_password(from_url: Any) -> None:
    with pytest.raises(ValueError, match="database 0 only") as raised:
        from_url("redis://:s3cret@127.0.0.1:7000/1", cluster=True)
    assert "s3cret" not in str(raised.value)
    assert "***" in str(raised.value)


@pytest.mark.parametrize("from_url", BUILDERS, ids=["sync", "async"])
@pytest.mark.parametrize(
    "options", [{"cluster": True}, {"sentinels": SENTINELS}], ids=["cluster", "sentinel"]
)
def test_topologies_need_a_tcp_url(from_url: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="use redis:// or rediss://"):
        from_url("unix:///tmp/redis.sock", **options)
    with pytest.raises(ValueError, match="needs a Redis url"):
        from_url(None, **options)


def test_cluster_and_sentinels_together_are_refused() -> None:
    with pytest.raises(ValueError, match="choose one topology"):
        TieredCache.from_url("redis://mymaster/0", cluster=True, sentinels=SENTINELS)


def test_sentinel_kwargs_without_sentinels_are_refused() -> None:
    with pytest.raises(ValueError, match="sentinel_kwargs needs sentinels"):
        TieredCache.from_url("redis://127.0.0.1:6379/0", sentinel_kwargs={"password": "x"})


@pytest.mark.parametrize(
    "sentinels",
    [
        [],
        "127.0.0.1:26379",
        [("127.0.0.1",)],
        [("127.0.0.1", "26379")],
        [("127.0.0.1", 0)],
        [("", 26379)],
        [("127.0.0.1", True)],
    ],
)
def test_each_sentinel_is_a_host_and_a_port(sentinels: object) -> None:
    with pytest.raises(ValueError, match="sentinel"):
        AsyncTieredCache.from_url("redis://mymaster/0", sentinels=sentinels)

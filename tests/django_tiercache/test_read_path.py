"""The Django backend reads through the core's one L1 lookup and one read path."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches

from tiercache.policy import TierPolicy


async def test_get_aget_and_get_or_set_all_read_through_the_policy(
    monkeypatch: pytest.MonkeyPatch, close_loop_clients: None
) -> None:
    calls: list[tuple[str, str]] = []
    for name in ("lookup", "get"):
        original = getattr(TierPolicy, name)

        def spy(
            policy: TierPolicy, key: str, *args: Any, name: str = name, original: Any = original
        ) -> Any:
            calls.append((name, key.partition(":1:")[2]))  # the caller's key
            return original(policy, key, *args)

        monkeypatch.setattr(TierPolicy, name, spy)
    cache = caches["default"]
    await cache.aset("user:1", "alice")
    assert cache.get("user:1") == "alice"
    assert await cache.aget("user:1") == "alice"
    assert await cache.aget("absent", "default") == "default"
    assert cache.get_or_set("user:2", lambda: "bob") == "bob"
    assert await cache.aget_or_set("user:3", "carol") == "carol"
    # The hits are answered by the one L1 lookup, building no flow; the miss and
    # get_or_set go through the one read path.
    assert calls[:3] == [("lookup", "user:1"), ("lookup", "user:1"), ("lookup", "absent")]
    assert [key for name, key in calls if name == "get"] == ["absent", "user:2", "user:3"]

"""The Django backend reads through the core's one read path, `TierPolicy.get`."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches

from tiercache.policy import TierPolicy


async def test_get_aget_and_get_or_set_all_read_through_the_policy(
    monkeypatch: pytest.MonkeyPatch, close_loop_clients: None
) -> None:
    calls: list[tuple[Any, ...]] = []
    original = TierPolicy.get

    def get(policy: TierPolicy, *args: Any) -> Any:
        calls.append(args)
        return original(policy, *args)

    monkeypatch.setattr(TierPolicy, "get", get)
    cache = caches["default"]
    await cache.aset("user:1", "alice")
    assert cache.get("user:1") == "alice"
    assert await cache.aget("user:1") == "alice"
    assert await cache.aget("absent", "default") == "default"
    assert cache.get_or_set("user:2", lambda: "bob") == "bob"
    assert await cache.aget_or_set("user:3", "carol") == "carol"
    assert [namespace for _, namespace, *_ in calls] == ["user", "user", "default", "user", "user"]

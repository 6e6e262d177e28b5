"""MemoryTier, the L1: expiry, bounds, LRU order, the sequence guard, thread safety."""

from __future__ import annotations

import inspect
import random
import re
import threading

import pytest

from tests.tiercache.support import FakeClock
from tiercache import MemoryTier, memory
from tiercache.memory import MISSING


def tier(
    clock: FakeClock, maxsize: int = 100, default_ttl: float | None = None, **kw: int
) -> MemoryTier:
    return MemoryTier(maxsize, default_ttl, timer=clock, **kw)


# -- expiry ----------------------------------------------------------------------------


def test_a_value_is_held_until_its_ttl_has_passed(clock: FakeClock) -> None:
    l1 = tier(clock)
    l1.put("a", "1", ttl=10)
    clock.advance(9.99)
    assert l1.get("a") == "1"
    clock.advance(0.01)
    assert l1.get("a") is MISSING
    assert len(l1) == 0


def test_each_entry_expires_on_its_own_ttl(clock: FakeClock) -> None:
    l1 = tier(clock)
    l1.put("short", "s", ttl=1)
    l1.put("long", "l", ttl=5)
    l1.put("forever", "f", ttl=None)
    clock.advance(2)
    assert [l1.get(k) for k in ("short", "long", "forever")] == [MISSING, "l", "f"]
    clock.advance(1_000_000)
    assert [l1.get(k) for k in ("short", "long", "forever")] == [MISSING, MISSING, "f"]


def test_default_ttl_caps_a_longer_ttl_and_applies_when_none_is_given(clock: FakeClock) -> None:
    l1 = tier(clock, default_ttl=5)
    l1.put("long", "l", ttl=100)
    l1.put("none", "n", ttl=None)
    l1.put("short", "s", ttl=2)
    assert l1.remaining_ttl("long") == 5
    assert l1.remaining_ttl("none") == 5
    assert l1.remaining_ttl("short") == 2
    clock.advance(5)
    assert [l1.get(k) for k in ("long", "none", "short")] == [MISSING, MISSING, MISSING]


def test_remaining_ttl_is_seconds_left_none_for_no_expiry_missing_for_absent(
    clock: FakeClock,
) -> None:
    l1 = tier(clock)
    l1.put("a", "1", ttl=10)
    l1.put("b", "2", ttl=None)
    clock.advance(4)
    assert l1.remaining_ttl("a") == pytest.approx(6)
    assert l1.remaining_ttl("b") is None
    assert l1.remaining_ttl("absent") is MISSING
    clock.advance(6)
    assert l1.remaining_ttl("a") is MISSING


def test_a_fill_never_outlives_its_ttl(clock: FakeClock) -> None:
    l1 = tier(clock, default_ttl=60)
    assert l1.fill("a", "1", ttl=3, since=l1.begin_read()) is True
    clock.advance(3)
    assert l1.get("a") is MISSING


# -- bounds ----------------------------------------------------------------------------


def test_maxsize_evicts_the_least_recently_used_entry(clock: FakeClock) -> None:
    l1 = tier(clock, maxsize=3)
    for key in "abc":
        l1.put(key, key.upper(), ttl=None)
    assert l1.get("a") == "A"  # a is now the most recently used
    l1.put("d", "D", ttl=None)
    assert l1.get("b") is MISSING
    assert [l1.get(k) for k in "acd"] == ["A", "C", "D"]
    assert len(l1) == 3


def test_replacing_a_held_key_evicts_nothing(clock: FakeClock) -> None:
    l1 = tier(clock, maxsize=2)
    l1.put("a", "1", ttl=None)
    l1.put("b", "2", ttl=None)
    l1.put("a", "3", ttl=None)
    assert (l1.get("a"), l1.get("b")) == ("3", "2")


def test_max_bytes_evicts_least_recently_used_entries_until_under_the_limit(
    clock: FakeClock,
) -> None:
    l1 = tier(clock, max_bytes=100)
    l1.put("a", "A", ttl=None, size=40)
    l1.put("b", "B", ttl=None, size=40)
    l1.get("a")
    l1.put("c", "C", ttl=None, size=30)
    assert l1.get("b") is MISSING
    assert (l1.get("a"), l1.get("c")) == ("A", "C")
    assert l1.bytes_used == 70


def test_an_entry_larger_than_max_bytes_is_not_held_and_drops_the_old_copy(
    clock: FakeClock,
) -> None:
    l1 = tier(clock, max_bytes=100)
    l1.put("a", "small", ttl=None, size=10)
    l1.put("b", "other", ttl=None, size=10)
    l1.put("a", "huge", ttl=None, size=101)
    assert l1.get("a") is MISSING
    assert l1.get("b") == "other"
    assert l1.bytes_used == 10


def test_bytes_used_follows_replacements_removals_and_clear(clock: FakeClock) -> None:
    l1 = tier(clock, max_bytes=1000)
    l1.put("a", "1", ttl=None, size=10)
    l1.put("b", "2", ttl=5, size=20)
    l1.put("a", "3", ttl=None, size=15)
    assert l1.bytes_used == 35
    l1.invalidate(["a"])
    assert l1.bytes_used == 20
    clock.advance(5)
    assert l1.get("b") is MISSING
    assert l1.bytes_used == 0
    l1.put("c", "4", ttl=None, size=7)
    l1.clear()
    assert (l1.bytes_used, len(l1)) == (0, 0)


def test_bytes_used_follows_evictions_by_count(clock: FakeClock) -> None:
    l1 = tier(clock, maxsize=2)
    for index, key in enumerate("abcd"):
        l1.put(key, key, ttl=None, size=10 * (index + 1))
    assert l1.bytes_used == 30 + 40


def test_evictions_count_entries_dropped_for_room_not_removals(clock: FakeClock) -> None:
    l1 = tier(clock, maxsize=2, max_bytes=100)
    for key in "abc":
        l1.put(key, key, ttl=None, size=10)  # "a" goes: three entries in room for two
    l1.put("big", "B", ttl=None, size=95)  # "b" and "c" go: over 100 bytes
    l1.invalidate(["big"])
    l1.put("d", "d", ttl=None, size=10)
    l1.clear()
    assert l1.evictions == 3


def test_maxsize_must_be_positive(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        MemoryTier(0, timer=clock)


# -- invalidation ----------------------------------------------------------------------


def test_invalidate_drops_the_keys_and_counts_those_held(clock: FakeClock) -> None:
    l1 = tier(clock)
    l1.put("a", "1", ttl=None)
    l1.put("b", "2", ttl=None)
    assert l1.invalidate(["a", "absent"]) == 1
    assert (l1.get("a"), l1.get("b")) == (MISSING, "2")


def test_invalidate_matching_drops_only_full_matches(clock: FakeClock) -> None:
    l1 = tier(clock)
    for key in ("user:1", "user:2", "xuser:1", "user:1:x"):
        l1.put(key, key, ttl=None)
    assert l1.invalidate_matching(re.compile(r"user:\d")) == 2
    assert sorted(l1.keys()) == ["user:1:x", "xuser:1"]


def test_update_changes_a_value_atomically_and_keeps_its_ttl(clock: FakeClock) -> None:
    l1 = tier(clock)
    l1.put("n", 1, ttl=10)
    clock.advance(4)
    assert l1.update("n", lambda held: held + 1) == 2  # type: ignore[operator]
    assert l1.get("n") == 2
    assert l1.remaining_ttl("n") == pytest.approx(6)
    seen: list[object] = []
    l1.update("absent", lambda held: seen.append(held) or 0)
    assert seen == [MISSING]


# -- the sequence guard ----------------------------------------------------------------


def test_a_fill_begun_before_an_invalidation_of_its_key_is_refused(clock: FakeClock) -> None:
    l1 = tier(clock)
    since = l1.begin_read()
    l1.invalidate(["a"])
    assert l1.fill("a", "old", ttl=None, since=since) is False
    assert l1.get("a") is MISSING


def test_a_fill_begun_after_the_invalidation_is_accepted(clock: FakeClock) -> None:
    l1 = tier(clock)
    l1.invalidate(["a"])
    since = l1.begin_read()
    assert l1.fill("a", "new", ttl=None, since=since) is True
    assert l1.get("a") == "new"


def test_an_invalidation_of_another_key_does_not_refuse_a_fill(clock: FakeClock) -> None:
    l1 = tier(clock)
    since = l1.begin_read()
    l1.invalidate(["b"])
    assert l1.fill("a", "1", ttl=None, since=since) is True


def test_a_local_write_supersedes_a_read_in_flight(clock: FakeClock) -> None:
    l1 = tier(clock)
    since = l1.begin_read()
    l1.put("a", "written", ttl=None)
    assert l1.fill("a", "read before the write", ttl=None, since=since) is False
    assert l1.get("a") == "written"


@pytest.mark.parametrize(
    "wipe",
    [lambda l1: l1.clear(), lambda l1: l1.invalidate_matching(re.compile("zzz"))],
    ids=["clear", "invalidate_matching"],
)
def test_clear_and_pattern_invalidation_refuse_every_older_fill(
    clock: FakeClock, wipe: object
) -> None:
    l1 = tier(clock)
    since = l1.begin_read()
    wipe(l1)  # type: ignore[operator]
    assert l1.fill("a", "old", ttl=None, since=since) is False
    assert l1.fill("a", "new", ttl=None, since=l1.begin_read()) is True


def test_a_fill_of_a_key_whose_tombstone_was_forgotten_is_refused(clock: FakeClock) -> None:
    l1 = MemoryTier(100, None, timer=clock, tombstones=2)
    since = l1.begin_read()
    l1.invalidate(["a"])
    l1.invalidate(["b"])
    l1.invalidate(["c"])  # "a" falls out of the bounded tombstone map
    assert l1.fill("a", "old", ttl=None, since=since) is False


def test_put_if_unchanged_stores_when_no_newer_write_raced(clock: FakeClock) -> None:
    l1 = tier(clock)
    since = l1.begin_read()
    l1.put_if_unchanged("a", "mine", ttl=None, since=since)
    assert l1.get("a") == "mine"


def test_put_if_unchanged_drops_the_key_when_a_newer_write_raced(clock: FakeClock) -> None:
    l1 = tier(clock)
    l1.put("a", "before", ttl=None)
    since = l1.begin_read()
    l1.put("a", "newer, from another thread", ttl=None)
    l1.put_if_unchanged("a", "older", ttl=None, since=since)
    assert l1.get("a") is MISSING  # neither value is known to be the last in L2
    assert l1.fill("a", "older", ttl=None, since=since) is False


def test_a_batch_put_stores_the_unraced_keys_drops_the_raced_and_stops_older_reads(
    clock: FakeClock,
) -> None:
    l1 = tier(clock, default_ttl=60)
    reader = l1.begin_read()  # a read of "b" began before the batch was written
    since = l1.begin_read()
    l1.put("a", "newer, from another thread", ttl=None)
    l1.put_many_if_unchanged([("a", "older", 5), ("b", "B", 5)], ttl=10, since=since)
    assert l1.get("a") is MISSING
    assert l1.get("b") == "B"
    assert l1.bytes_used == 5
    assert l1.fill("b", "stale", ttl=None, since=reader) is False
    clock.advance(10)
    assert l1.get("b") is MISSING


def test_a_batch_fill_keeps_each_entry_for_its_own_ttl_capped_by_the_tier(
    clock: FakeClock,
) -> None:
    l1 = tier(clock, default_ttl=60)
    since = l1.begin_read()
    l1.invalidate(["c"])
    l1.fill_many([("a", "A", 5.0, 1), ("b", "B", None, 1), ("c", "C", None, 1)], since)
    assert (l1.get("a"), l1.get("b"), l1.get("c")) == ("A", "B", MISSING)
    clock.advance(5)
    assert (l1.get("a"), l1.get("b")) == (MISSING, "B")
    clock.advance(55)
    assert l1.get("b") is MISSING


# -- threads ---------------------------------------------------------------------------


def test_concurrent_use_raises_nothing_and_keeps_counts_consistent(clock: FakeClock) -> None:
    l1 = MemoryTier(50, 60, max_bytes=400, timer=clock)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(3000):
                key = f"k{rng.randrange(80)}"
                action = rng.randrange(7)
                if action == 0:
                    l1.put(key, key, ttl=rng.choice([None, 1, 30]), size=10)
                elif action == 1:
                    l1.fill(key, key, ttl=None, since=l1.begin_read(), size=10)
                elif action == 2:
                    l1.invalidate([key])
                elif action == 3:
                    l1.put_if_unchanged(key, key, None, l1.begin_read(), size=10)
                elif action == 4:
                    held = l1.get(key)
                    assert held is MISSING or held == key
                elif action == 5:
                    l1.remaining_ttl(key)
                else:
                    clock.advance(0.01)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(l1) <= 50
    assert l1.bytes_used == 10 * len(l1) <= 400
    assert len(set(l1.keys())) == len(l1)


def test_the_l1_uses_only_the_public_api_of_cachetools() -> None:
    source = inspect.getsource(memory)
    assert re.search(r"_(Cache|LRUCache|TLRUCache)__", source) is None


def test_cachetools_accounting_stays_true_through_fast_inserts_and_evictions(
    clock: FakeClock,
) -> None:
    tier = MemoryTier(3, None, timer=clock)
    for index in range(10):
        tier.put(f"k{index}", index, None)
        tier.get(f"k{max(0, index - 2)}")
    lru = tier._data
    assert len(lru) == lru.currsize == 3
    assert sorted(lru) == sorted(tier.keys())
    tier.invalidate(["k9"])
    assert len(lru) == lru.currsize == 2
    assert lru.popitem()[0] in {"k7", "k8"}  # cachetools' own API still agrees


# -- expire and inspection ---------------------------------------------------------------


def test_expire_gives_a_new_ttl_and_keeps_the_entry_counted_against_max_bytes(
    clock: FakeClock,
) -> None:
    l1 = tier(clock, max_bytes=250)
    l1.put("a", "A", ttl=10, size=100)
    l1.put("b", "B", ttl=10, size=100)
    assert l1.expire("a", 30) is True
    assert l1.expire("absent", 30) is False
    assert l1.bytes_used == 200
    l1.put("c", "C", ttl=10, size=100)  # over 250 bytes: the least recently used goes
    assert l1.bytes_used == 200
    assert (l1.get("b"), l1.get("a"), l1.get("c")) == (MISSING, "A", "C")
    clock.advance(20)
    assert l1.get("a") == "A"


def test_entry_shows_how_a_key_is_held_without_touching_it(clock: FakeClock) -> None:
    wall = FakeClock(1_700_000_000.0)
    l1 = MemoryTier(2, None, timer=clock, clock=wall)
    l1.put("a", {"n": 1}, ttl=10, size=42)
    l1.put("b", "B", ttl=None)
    clock.advance(2.5)
    wall.advance(2.5)
    entry = l1.entry("a")
    assert entry == {
        "key": "a",
        "value": "{'n': 1}",
        "ttl": 8,
        "created_at": 1_700_000_000.0,
        "expires_at": 1_700_000_010.0,
        "value_type": "dict",
        "size": 42,
    }
    assert l1.entry("b") == {
        "key": "b",
        "value": "B",
        "ttl": None,
        "created_at": 1_700_000_000.0,
        "expires_at": None,
        "value_type": "str",
        "size": 0,
    }
    l1.put("c", "C", ttl=None)  # "a" was not touched by `entry`: it is the oldest
    assert l1.entry("a") is None
    assert l1.entry("absent") is None
    shown = l1.entry("b", decode=lambda held: f"decoded {held}")
    assert shown is not None
    assert shown["value"] == "decoded B"

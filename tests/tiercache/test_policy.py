"""TierPolicy, the sans-IO flows: driven over an in-memory L2 and a fake clock.

The last tests check in-process fan-out and real expiry on a real Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from returns.result import Result, Success

from tests.tiercache.conftest import MakeCache
from tests.tiercache.fake_l2 import FakeL2
from tests.tiercache.support import CacheUnderTest, FakeClock, failure_of, success_of
from tiercache import (
    AsyncTieredCache,
    CacheError,
    CacheMetrics,
    CacheUnavailable,
    MemoryTier,
    NotAnInteger,
    TieredCache,
    envelope,
    messages,
)
from tiercache.bus import LocalBus, Mode
from tiercache.codecs import TextCodec
from tiercache.commands import Fill
from tiercache.drivers import drive
from tiercache.memory import MISSING
from tiercache.messages import decode
from tiercache.policy import Flow, TierPolicy


class Rig:
    """A policy over an L1 and a fake L2 sharing one fake clock."""

    def __init__(
        self, clock: FakeClock, *, l1_ttl: float | None = 60.0, mode: Mode = "broadcast"
    ) -> None:
        self.clock = clock
        self.l1 = MemoryTier(100, l1_ttl, timer=clock)
        self.l2 = FakeL2(clock)
        self.metrics = CacheMetrics()
        self.bus = LocalBus("tiercache:invalidate:0", "this-process")
        self.bus.require(mode)
        if mode != "off":
            self.bus.listen_with(lambda: None)  # as a cache does; the test says when healthy
            self.bus.healthy = True
        self.bus.attach(self.l1)
        self.policy = TierPolicy(
            l1=self.l1,
            has_l2=True,
            codec=TextCodec(),
            bus=self.bus,
            metrics=self.metrics,
            clock=clock,
        )

    def run(self, flow: Flow[Any]) -> Result[Any, CacheError]:
        return drive(flow, self.l2)

    def get(self, key: str) -> Result[Any, CacheError]:
        return self.run(self.policy.get(key, "ns"))

    def set(self, key: str, value: str, ttl: float | None = None) -> Result[Any, CacheError]:
        return self.run(self.policy.set(key, "ns", value, ttl))


@pytest.fixture
def rig(clock: FakeClock) -> Rig:
    return Rig(clock)


def script_of(request: object) -> str:
    assert isinstance(request, tuple)
    assert request[0] == "EVALSHA"
    return str(request[1])


# -- reads -----------------------------------------------------------------------------


def test_l1_copy_expires_no_later_than_redis_copy(rig: Rig) -> None:
    rig.l2.plant("k", "v", ttl=5)
    assert rig.get("k") == Success("v")
    rig.clock.advance(4.9)
    assert rig.l1.get("k") == "v"
    rig.clock.advance(0.1)
    assert rig.l1.get("k") is MISSING
    assert rig.get("k") == Success(MISSING)


@pytest.mark.parametrize("redis_ttl", [None, 100], ids=["no-redis-ttl", "longer-redis-ttl"])
def test_l1_copy_lives_at_most_l1_ttl(clock: FakeClock, redis_ttl: float | None) -> None:
    rig = Rig(clock, l1_ttl=10)
    rig.l2.plant("k", "v", ttl=redis_ttl)
    rig.get("k")
    clock.advance(9.9)
    assert rig.l1.get("k") == "v"
    clock.advance(0.1)
    assert rig.l1.get("k") is MISSING
    assert rig.get("k") == Success("v")  # still in Redis: read and filled again


def test_an_l1_hit_sends_no_request(rig: Rig) -> None:
    rig.l2.plant("k", "v")
    rig.get("k")
    rig.get("k")
    rig.get("k")
    assert rig.l2.requests == [("GET", "k")]  # the expiry came in the value's envelope
    assert rig.metrics.get_stats("ns")["l1_hits"] == 2
    assert rig.metrics.get_stats("ns")["l2_hits"] == 1


def test_a_miss_is_not_remembered_in_l1(rig: Rig) -> None:
    assert rig.get("k") == Success(MISSING)
    rig.l2.plant("k", "later")
    assert rig.get("k") == Success("later")
    assert rig.metrics.get_stats("ns")["misses"] == 1


def test_a_failed_read_returns_failure_and_leaves_l1_as_it_was(rig: Rig) -> None:
    rig.l1.put("held", "h", ttl=None)
    rig.l2.fail_with()
    assert isinstance(failure_of(rig.get("k")), CacheUnavailable)
    assert rig.get("held") == Success("h")
    assert rig.metrics.get_error_kinds() == {"ns": {"CacheUnavailable": 1}}


def test_a_read_that_began_before_an_invalidation_does_not_fill_l1(rig: Rig) -> None:
    rig.l2.plant("k", "old")
    flow = rig.policy.get("k", "ns")
    request = next(flow)
    reply = rig.l2(request)  # the read has its answer, but has not returned yet...
    assert rig.set("k", "new") == Success(True)  # ...when another thread writes
    with pytest.raises(StopIteration) as stop:
        flow.send(reply)
    assert stop.value.value == Success("old")  # the caller gets what it read
    assert rig.l1.get("k") == "new"  # but L1 keeps the newer value


def test_a_read_that_began_before_a_remote_invalidation_does_not_fill_l1(rig: Rig) -> None:
    rig.l2.plant("k", "old")
    rig.l2.before = lambda _: rig.l1.invalidate(["k"])  # announced while GET is in flight
    assert rig.get("k") == Success("old")
    assert rig.l1.get("k") is MISSING


def test_l1_is_not_filled_while_the_bus_is_deaf(rig: Rig) -> None:
    rig.l2.plant("k", "v")
    rig.bus.healthy = False
    assert rig.get("k") == Success("v")
    assert rig.l1.get("k") is MISSING


def test_a_bare_value_is_filled_for_the_ttl_pttl_reports(rig: Rig, clock: FakeClock) -> None:
    rig.l2.plant("k", "41", ttl=5, bare=True)  # an integer: INCRBY needs it bare
    assert rig.get("k") == Success("41")
    assert rig.l2.requests[0] == ("GET", "k")
    assert rig.l2.requests[1] == ("PTTL", "k")
    clock.advance(4.9)
    assert rig.l1.get("k") == "41"
    clock.advance(0.1)
    assert rig.l1.get("k") is MISSING


def test_a_bare_value_that_expired_between_get_and_pttl_is_not_filled(rig: Rig) -> None:
    flow = rig.policy.get("k", "ns")
    next(flow)
    flow.send(b"v")  # bare: the policy asks for its TTL...
    with pytest.raises(StopIteration) as stop:
        flow.send([-2])  # ...and it is gone by then
    assert stop.value.value == Success("v")
    assert rig.l1.get("k") is MISSING


def test_a_value_past_its_envelope_expiry_is_served_but_not_filled(
    rig: Rig, clock: FakeClock
) -> None:
    # A writer whose clock runs 2 s behind ours gave it 1 s: Redis still has it.
    expired = envelope.stamp(int(clock() * 1000) - 1000)
    rig.l2.data["k"] = (envelope.wrap(b"v", expired), clock() * 1000 + 1000)
    assert rig.get("k") == Success("v")
    assert rig.l1.get("k") is MISSING
    assert rig.l2.requests == [("GET", "k")]


def test_an_l1_fill_never_outlives_the_envelope_expiry(rig: Rig, clock: FakeClock) -> None:
    rig.l2.plant("k", "v", ttl=10)
    clock.advance(4)
    assert rig.get("k") == Success("v")
    clock.advance(5.9)
    assert rig.l1.get("k") == "v"
    clock.advance(0.1)
    assert rig.l1.get("k") is MISSING


def test_expire_rewrites_the_envelope_so_readers_fill_for_the_new_ttl(
    rig: Rig, clock: FakeClock
) -> None:
    rig.l2.plant("k", "v", ttl=10)
    assert rig.run(rig.policy.expire("k", "ns", 100)) == Success(True)
    assert rig.get("k") == Success("v")
    clock.advance(50)
    assert rig.l1.get("k") == "v"
    assert rig.l2.data["k"][0][:14] == b"@%013d" % int((clock() - 50 + 100) * 1000)


def test_corrupt_bytes_read_as_a_miss_counted_as_an_error_and_not_filled(rig: Rig) -> None:
    rig.l2.plant("k", b"\xff\xfe")
    assert rig.get("k") == Success(MISSING)
    assert rig.l1.get("k") is MISSING
    stats = rig.metrics.get_stats("ns")
    assert (stats["misses"], stats["errors"]) == (1, 1)
    assert rig.metrics.get_error_kinds() == {"ns": {"CorruptData": 1}}


# -- batches ---------------------------------------------------------------------------


def test_get_many_makes_one_l2_request_for_the_l1_misses(rig: Rig) -> None:
    rig.l1.put("a", "A", ttl=None)
    rig.l1.put("b", "B", ttl=None)
    rig.l2.plant("c", "C", ttl=30)
    keys = [(key, "ns") for key in "abcd"]
    assert rig.run(rig.policy.get_many(keys)) == Success({"a": "A", "b": "B", "c": "C"})
    assert len(rig.l2.requests) == 1
    request = rig.l2.requests[0]
    assert request == ("MGET", "c", "d")
    assert rig.l1.get("c") == "C"
    rig.clock.advance(30)
    assert rig.l1.get("c") is MISSING  # filled with the Redis TTL
    stats = rig.metrics.get_stats("ns")
    assert (stats["l1_hits"], stats["l2_hits"], stats["misses"]) == (2, 1, 1)


def test_get_many_sends_nothing_when_l1_holds_every_key(rig: Rig) -> None:
    rig.l1.put("a", "A", ttl=None)
    assert rig.run(rig.policy.get_many([("a", "ns")])) == Success({"a": "A"})
    assert rig.l2.requests == []


def test_get_many_filling_is_guarded_like_get(rig: Rig) -> None:
    rig.l2.plant("a", "old")
    rig.l2.before = lambda _: rig.l1.invalidate(["a"])
    assert rig.run(rig.policy.get_many([("a", "ns")])) == Success({"a": "old"})
    assert rig.l1.get("a") is MISSING


def test_set_many_makes_one_l2_request_and_fills_l1(rig: Rig) -> None:
    items = [("a", "ns", "A"), ("b", "ns", "B"), ("c", "other", "C")]
    assert rig.run(rig.policy.set_many(items, 20)) == Success([])
    assert len(rig.l2.requests) == 1
    assert rig.l2.requests[0][0][0] == "SET"  # one pipeline: the SETs and one PUBLISH
    assert [rig.l2.payload(key) for key in "abc"] == [b"A", b"B", b"C"]
    assert [rig.l1.get(key) for key in "abc"] == ["A", "B", "C"]
    rig.clock.advance(20)
    assert [rig.l1.get(key) for key in "abc"] == [MISSING] * 3
    assert [rig.l2.payload(key) for key in "abc"] == [None] * 3


def test_a_failed_set_many_evicts_every_key_from_l1(rig: Rig) -> None:
    rig.l1.put("a", "old", ttl=None)
    rig.l1.put("b", "old", ttl=None)
    rig.l2.fail_with()
    items = [("a", "ns", "new"), ("b", "ns", "new")]
    assert isinstance(failure_of(rig.run(rig.policy.set_many(items, None))), CacheUnavailable)
    assert (rig.l1.get("a"), rig.l1.get("b")) == (MISSING, MISSING)


# -- writes ----------------------------------------------------------------------------


def test_a_write_reaches_l2_before_l1_changes(rig: Rig) -> None:
    rig.l1.put("k", "old", ttl=None)
    seen_in_l1: list[object] = []
    rig.l2.before = lambda _: seen_in_l1.append(rig.l1.get("k"))
    assert rig.set("k", "new") == Success(True)
    assert seen_in_l1 == ["old"]
    assert rig.l2.requests[0][0][:2] == ("SET", "k")
    assert rig.l2.payload("k") == b"new"
    assert rig.l1.get("k") == "new"


def test_a_failed_write_evicts_l1_and_returns_failure(rig: Rig) -> None:
    rig.l1.put("k", "old", ttl=None)
    rig.l2.fail_with()
    error = failure_of(rig.set("k", "new"))
    assert isinstance(error, CacheUnavailable)
    assert rig.l1.get("k") is MISSING
    assert rig.metrics.get_error_kinds() == {"ns": {"CacheUnavailable": 1}}


def test_a_write_gives_its_l1_copy_the_write_ttl(rig: Rig) -> None:
    rig.set("k", "v", ttl=3)
    rig.clock.advance(3)
    assert rig.l1.get("k") is MISSING
    assert rig.l2.payload("k") is None


def test_a_write_tells_other_processes_in_the_same_request(rig: Rig) -> None:
    rig.set("k", "v")
    assert len(rig.l2.requests) == 1
    [(channel, message)] = rig.l2.published
    assert channel == "tiercache:invalidate:0"  # one channel for every process
    invalidation = decode(message)
    assert invalidation is not None
    assert (invalidation.sender, invalidation.op, invalidation.keys) == (
        "this-process",
        "keys",
        ("k",),
    )


def test_a_refused_only_if_absent_write_evicts_the_l1_copy(rig: Rig) -> None:
    rig.l2.plant("k", "someone else's")
    rig.l1.put("k", "stale", ttl=None)
    flow = rig.policy.set("k", "ns", "mine", None, only_if_absent=True)
    assert rig.run(flow) == Success(False)
    assert rig.l1.get("k") is MISSING
    assert rig.l2.payload("k") == b"someone else's"


@pytest.mark.parametrize(
    "write",
    [
        lambda rig: rig.policy.delete(["k"], "ns"),
        lambda rig: rig.policy.expire("k", "ns", 10),
        lambda rig: rig.policy.increment("k", "ns", 1),
    ],
    ids=["delete", "expire", "increment"],
)
def test_a_change_in_l2_evicts_l1_even_when_it_fails(
    rig: Rig, write: Callable[[Rig], Flow[Any]]
) -> None:
    rig.l1.put("k", "5", ttl=None)
    rig.l2.fail_with()
    assert isinstance(failure_of(rig.run(write(rig))), CacheUnavailable)
    assert rig.l1.get("k") is MISSING


def test_increment_runs_in_l2_and_drops_the_l1_copy(rig: Rig) -> None:
    rig.set("k", "5")
    assert rig.run(rig.policy.increment("k", "ns", 2)) == Success(7)
    assert rig.l1.get("k") is MISSING
    assert rig.l2.payload("k") == b"7"
    assert rig.get("k") == Success("7")


def test_increment_of_a_non_integer_names_the_key(rig: Rig) -> None:
    rig.set("k", "abc")
    error = failure_of(rig.run(rig.policy.increment("k", "ns", 1)))
    assert isinstance(error, NotAnInteger)
    assert error.key == "k"
    assert rig.l2.payload("k") == b"abc"


def test_delete_matching_scans_and_unlinks_only_matches(rig: Rig) -> None:
    for key in ("tc:user:1", "tc:user:2", "tc:order:1"):
        rig.set(key, "v")
    assert rig.run(rig.policy.delete_matching("tc:user:*", "user")) == Success(2)
    assert sorted(rig.l2.data) == ["tc:order:1"]
    assert rig.l1.keys() == ["tc:order:1"]
    assert "KEYS" not in {request[0] for request in rig.l2.requests if isinstance(request, tuple)}


def test_a_policy_needs_at_least_one_tier() -> None:
    with pytest.raises(ValueError, match="at least one tier"):
        TierPolicy(l1=None, has_l2=False, codec=TextCodec(), bus=LocalBus("", "x"))


# -- in-process fan-out, on a real Redis -----------------------------------------------

WRITES: dict[str, Callable[[CacheUnderTest], Awaitable[Result[Any, CacheError]]]] = {
    "set": lambda c: c.set("user:1", "new"),
    "set_json": lambda c: c.set_json("user:1", {"new": 1}),
    "set_many": lambda c: c.set_many({"user:1": "new"}),
    "delete": lambda c: c.delete("user:1"),
    "increment": lambda c: c.increment("user:1"),
    "flush": lambda c: c.flush(),
    "delete_pattern": lambda c: c.delete_pattern("user:*"),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
@pytest.mark.parametrize(
    ("writer_colour", "reader_colour"),
    [("sync", "sync"), ("async", "async"), ("sync", "async")],
)
async def test_two_caches_on_one_redis_in_one_process_see_each_others_writes_at_once(
    redis_url: str,
    make_cache: MakeCache,
    write: Callable[[CacheUnderTest], Awaitable[Result[Any, CacheError]]],
    writer_colour: str,
    reader_colour: str,
) -> None:
    writer = await make_cache("l1l2", writer_colour, redis_url)
    reader = await make_cache("l1l2", reader_colour, redis_url)
    await writer.set("user:1", "1")
    assert await reader.get("user:1") == Success("1")  # now held in the reader's L1
    assert isinstance(await write(writer), Success)
    expected = await make_cache("l2", "sync", redis_url)  # what Redis itself says
    assert await reader.get("user:1") == await expected.get("user:1")
    assert await reader.get("user:1") != Success("1")


async def test_a_real_redis_expiry_is_not_outlived_by_the_l1_copy(
    redis_url: str, make_cache: MakeCache
) -> None:
    writer = await make_cache("l2", "sync", redis_url, timer=time.monotonic)
    reader = await make_cache("l1l2", "sync", redis_url, timer=time.monotonic, l1_ttl=60)
    await writer.set("user:1", "v", ttl=1)
    assert await reader.get("user:1") == Success("v")
    time.sleep(1.05)
    assert await reader.get("user:1") == Success(None)


@pytest.mark.parametrize(
    "keys",
    [["dj::1:user:1"], ['quote"d'], ["back\\slash"], ["héllo"], ["tab\there"], ["a", "b"], []],
)
def test_every_invalidation_message_decodes_to_what_was_encoded(keys: list[str]) -> None:
    text = messages.encode("sender-1", "keys", keys)
    assert messages.decode(text) == messages.Invalidation("sender-1", "keys", tuple(keys), "")
    assert json.loads(text) == ["sender-1", "keys", keys, ""]


# -- one read path ------------------------------------------------------------------------


def test_an_l1_hit_is_answered_without_building_a_flow(rig: Rig) -> None:
    rig.l2.plant("k", "v")
    assert rig.policy.lookup("k", "ns") is MISSING  # not held yet: the shell goes on to get
    rig.get("k")
    assert rig.policy.lookup("k", "ns") == "v"  # a plain value: no Result, no flow
    assert rig.policy.get("k", "ns") == Success("v")  # a Result, not a generator


class ReadSpy:
    """Wraps `TierPolicy.lookup` and `TierPolicy.get`, recording the caller's key of each."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lookups: list[str] = []
        self.gets: list[str] = []
        for name, seen in (("lookup", self.lookups), ("get", self.gets)):
            original = getattr(TierPolicy, name)

            def spy(
                policy: TierPolicy,
                key: str,
                *args: Any,
                original: Any = original,
                seen: list[str] = seen,
            ) -> Any:
                seen.append(key.rsplit(":", 1)[-1])
                return original(policy, key, *args)

            monkeypatch.setattr(TierPolicy, name, spy)


@pytest.mark.parametrize("layout", ["l1", "l2", "l1l2"])
@pytest.mark.parametrize("colour", ["sync", "async"])
async def test_every_read_of_the_core_goes_through_the_policy_read(
    make_cache: MakeCache, redis_url: str, monkeypatch: pytest.MonkeyPatch, layout: str, colour: str
) -> None:
    spy = ReadSpy(monkeypatch)
    under = await make_cache(layout, colour, redis_url)
    await under.set("k", "v")
    assert success_of(await under.get("k")) == "v"  # an L1 hit where there is an L1
    assert success_of(await under.get("k")) == "v"
    assert success_of(await under.get_json("absent")) is None
    cache = under.cache
    if isinstance(cache, AsyncTieredCache):

        async def load() -> str:
            return "loaded"

        assert success_of(await cache.get_or_set("g", load, 10)) == "loaded"
    else:
        assert success_of(cache.get_or_set("g", lambda: "loaded", 10)) == "loaded"
    # Every plain read asks L1 through the one lookup; every read L1 did not answer
    # (and get_or_set, which weighs the copy's life) goes through the one read path.
    if layout == "l2":
        assert spy.gets == ["k", "k", "absent", "g"]
    else:
        assert spy.gets == ["absent", "g"]
    assert spy.lookups[:2] == ["k", "k"]
    assert spy.lookups.count("absent") >= 1


def test_l1_only_expire_keeps_l1_bounded_by_l1_max_bytes() -> None:
    cache = TieredCache.from_url(None, l1_ttl=None, l1_max_bytes=250)
    success_of(cache.set("a", "A" * 100))
    success_of(cache.set("b", "B" * 100))
    assert success_of(cache.expire("a", 60)) is True
    assert success_of(cache.expire("b", 60)) is True
    assert cache.l1 is not None
    assert cache.l1.bytes_used == 200
    success_of(cache.set("c", "C" * 100))  # over 250 bytes: the least recently used goes
    assert cache.l1.bytes_used == 200
    assert len(cache.l1) == 2


# -- tracking mode -----------------------------------------------------------------------


@pytest.fixture
def tracking(clock: FakeClock) -> Rig:
    return Rig(clock, mode="tracking")


def test_in_tracking_mode_a_read_that_fills_l1_is_sent_tracked(tracking: Rig) -> None:
    tracking.l2.plant("k", "v")
    assert tracking.get("k") == Success("v")
    assert tracking.l2.requests == [Fill(("GET", "k"))]
    assert tracking.l1.get("k") == "v"


def test_a_read_the_tier_could_not_track_does_not_fill_l1(tracking: Rig) -> None:
    tracking.l2.plant("k", "v")
    untracked = FakeL2(tracking.clock, data=tracking.l2.data)

    def answer_untracked(request: Any) -> object:
        reply = untracked(request)
        return (reply[0], False) if isinstance(request, Fill) else reply

    assert drive(tracking.policy.get("k", "ns"), answer_untracked) == Success("v")
    assert tracking.l1.get("k") is MISSING


def test_in_tracking_mode_a_write_is_read_back_tracked_and_kept_in_l1(tracking: Rig) -> None:
    tracking.l1.put("k", "old", ttl=None)
    assert tracking.set("k", "new", ttl=5) == Success(True)
    [request] = tracking.l2.requests
    assert isinstance(request, Fill)
    assert request.command == ("GET", "k")
    assert request.write is not None
    assert request.write[:2] == ("SET", "k")
    assert request.write[3:] == ("PX", 5000)
    assert tracking.l2.published == []
    assert tracking.l1.get("k") == "new"


def test_a_write_the_tier_could_not_track_drops_the_own_l1_copy(tracking: Rig) -> None:
    tracking.l1.put("k", "old", ttl=None)

    def answer_untracked(request: Any) -> object:
        assert isinstance(request, Fill)
        assert request.write is not None
        return tracking.l2(request.write), False

    assert drive(tracking.policy.set("k", "ns", "new", None), answer_untracked) == Success(True)
    assert tracking.l2.payload("k") == b"new"
    assert tracking.l1.get("k") is MISSING


def test_in_tracking_mode_set_many_publishes_nothing(tracking: Rig) -> None:
    assert tracking.run(tracking.policy.set_many([("a", "ns", "A"), ("b", "ns", "B")], None))
    assert tracking.l2.requests == [
        ("MSET", "a", tracking.l2.data["a"][0], "b", tracking.l2.data["b"][0])
    ]
    assert tracking.l2.published == []

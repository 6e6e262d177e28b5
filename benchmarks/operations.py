"""The timed operations: each prepares its keys untimed, then times one batch of calls.

A batch returns (elapsed ns, calls). Setting up, writing keys from the other process and
checking the answers all happen outside the timed loop; the loop itself is the bare
bound method in a `for`, the same for every subject.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from benchmarks.subjects import CORE, VALUE_DICT, VALUE_STR, CacheCalls, Subject
from benchmarks.writer import Writer

__all__ = ["OPERATIONS", "Batch", "Context", "Operation", "Target"]

Batch = Callable[[], tuple[int, int]]
_now = time.perf_counter_ns


@dataclass
class Context:
    """What every batch may use: fresh keys, the writer process, the event loop."""

    writer: Writer
    loop: asyncio.AbstractEventLoop
    #: A repeatable batch (hits) runs again until it has lasted this long.
    min_batch_ns: int
    #: Pause after the other process wrote, so its invalidations are not timed as reads.
    settle_s: float
    _serial: Iterator[int] = field(default_factory=itertools.count)

    def keys(self, count: int) -> list[str]:
        """Return `count` keys never used before in this run."""
        batch = next(self._serial)
        return [f"bench:{batch}:{i}" for i in range(count)]

    def write_elsewhere(self, subject: Subject, keys: list[str]) -> None:
        """Have the other process store VALUE_STR at `keys` through its own `subject`."""
        self.writer.write(subject, keys)
        time.sleep(self.settle_s)


@dataclass(frozen=True)
class Target:
    """Our median of per-round ratios to django-redis must be at most `vs_django_redis`."""

    vs_django_redis: float
    #: Also be faster than LocMemCache (ratio to it below 1).
    beat_locmem: bool = False

    def describe(self) -> str:
        """Return the target as the report shows it."""
        text = f"≤ {self.vs_django_redis:g}"
        return f"{text}, < 1 vs locmem" if self.beat_locmem else text


Prepare = Callable[[Context, Subject, CacheCalls, int], Batch]


@dataclass(frozen=True)
class Operation:
    """One row of the report."""

    key: str
    label: str
    #: Calls per batch in a full run (a get_many call counts once).
    calls: int
    prepare: Prepare
    target: Target | None = None
    #: Needs another process to see the subject's writes (not LocMemCache).
    shared_only: bool = False


def _plain(result: object) -> object:
    """Return a core `Result`'s value, or a Django answer as it is."""
    unwrap = getattr(result, "unwrap", None)
    return unwrap() if callable(unwrap) else result


def _expect(what: str, got: object, wanted: object) -> None:
    if _plain(got) != wanted:
        raise AssertionError(f"{what}: expected {wanted!r:.60}, got {_plain(got)!r:.60}")


def _repeat(once: Callable[[], int], calls: int, context: Context) -> tuple[int, int]:
    elapsed = done = 0
    while True:
        elapsed += once()
        done += calls
        if elapsed >= context.min_batch_ns:
            return elapsed, done


def _get_hit(value: object, *, as_dict: bool) -> Prepare:
    def prepare(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
        get, put = (calls.get_dict, calls.set_dict) if as_dict else (calls.get, calls.set)
        (key,) = context.keys(1)
        put(key, value)
        _expect("warm-up read", get(key), value)

        def once() -> int:
            start = _now()
            for _ in range(n):
                get(key)
            return _now() - start

        def batch() -> tuple[int, int]:
            timed = _repeat(once, n, context)
            _expect("get hit", get(key), value)
            return timed

        return batch

    return prepare


def _get_miss(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    get, keys = calls.get, context.keys(n)

    def batch() -> tuple[int, int]:
        last: object = None
        start = _now()
        for key in keys:
            last = get(key)
        elapsed = _now() - start
        _expect("get miss", last, None)
        return elapsed, n

    return batch


def _l2_hit(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    get, keys = calls.get, context.keys(n)
    context.write_elsewhere(subject, keys)

    def batch() -> tuple[int, int]:
        last: object = None
        start = _now()
        for key in keys:
            last = get(key)
        elapsed = _now() - start
        _expect("first read of a key written elsewhere", last, VALUE_STR)
        return elapsed, n

    return batch


def _get_many_cold(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    get_many, keys = calls.get_many, context.keys(100 * n)
    context.write_elsewhere(subject, keys)
    groups = [keys[i : i + 100] for i in range(0, len(keys), 100)]

    def batch() -> tuple[int, int]:
        last: object = None
        start = _now()
        for group in groups:
            last = get_many(group)
        elapsed = _now() - start
        _expect("get_many found", _found(last), 100)
        return elapsed, n

    return batch


def _get_many_warm(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    get_many, keys = calls.get_many, context.keys(100)
    calls.set_many(dict.fromkeys(keys, VALUE_STR))
    _expect("get_many found", _found(get_many(keys)), 100)

    def once() -> int:
        start = _now()
        for _ in range(n):
            get_many(keys)
        return _now() - start

    def batch() -> tuple[int, int]:
        timed = _repeat(once, n, context)
        _expect("get_many found", _found(get_many(keys)), 100)
        return timed

    return batch


def _found(answer: object) -> int:
    found = _plain(answer)
    assert isinstance(found, dict)
    return sum(value is not None for value in found.values())


def _set(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    put, keys = calls.set, context.keys(n)

    def batch() -> tuple[int, int]:
        start = _now()
        for key in keys:
            put(key, VALUE_STR)
        elapsed = _now() - start
        _expect("read after set", calls.get(keys[-1]), VALUE_STR)
        return elapsed, n

    return batch


def _set_many(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    set_many, keys = calls.set_many, context.keys(100 * n)
    mappings = [dict.fromkeys(keys[i : i + 100], VALUE_STR) for i in range(0, len(keys), 100)]

    def batch() -> tuple[int, int]:
        start = _now()
        for mapping in mappings:
            set_many(mapping)
        elapsed = _now() - start
        _expect("read after set_many", calls.get(keys[-1]), VALUE_STR)
        return elapsed, n

    return batch


def _incr(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    incr, (key,) = calls.incr, context.keys(1)
    # Django's incr needs the key to exist; the core stores text.
    calls.set(key, "0" if subject == CORE else 0)

    def batch() -> tuple[int, int]:
        start = _now()
        for _ in range(n):
            incr(key)
        elapsed = _now() - start
        _expect("counter", incr(key, 0), n)
        return elapsed, n

    return batch


def _delete(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    delete, keys = calls.delete, context.keys(n)
    calls.set_many(dict.fromkeys(keys, VALUE_STR))

    def batch() -> tuple[int, int]:
        start = _now()
        for key in keys:
            delete(key)
        elapsed = _now() - start
        _expect("read after delete", calls.get(keys[-1]), None)
        return elapsed, n

    return batch


def _aget_hit(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    aget, (key,) = calls.aget, context.keys(1)
    calls.set(key, VALUE_STR)
    run = context.loop.run_until_complete
    _expect("warm-up read", run(aget(key)), VALUE_STR)

    async def timed() -> int:
        start = _now()
        for _ in range(n):
            await aget(key)
        return _now() - start

    def batch() -> tuple[int, int]:
        result = _repeat(lambda: run(timed()), n, context)
        _expect("aget hit", run(aget(key)), VALUE_STR)
        return result

    return batch


def _aset(context: Context, subject: Subject, calls: CacheCalls, n: int) -> Batch:
    aset, keys = calls.aset, context.keys(n)

    async def timed() -> int:
        start = _now()
        for key in keys:
            await aset(key, VALUE_STR)
        return _now() - start

    def batch() -> tuple[int, int]:
        elapsed = context.loop.run_until_complete(timed())
        _expect("read after aset", calls.get(keys[-1]), VALUE_STR)
        return elapsed, n

    return batch


OPERATIONS: tuple[Operation, ...] = (
    Operation("get_hit_str", "get hit (L1), 100 B str", 500, _get_hit(VALUE_STR, as_dict=False), Target(0.03, beat_locmem=True)),
    Operation("get_hit_dict", "get hit (L1), 10 KB dict", 500, _get_hit(VALUE_DICT, as_dict=True)),
    Operation("get_miss", "get miss", 300, _get_miss),
    Operation("l2_hit", "L1 miss → L2 hit (written by another process)", 300, _l2_hit, Target(0.8), shared_only=True),
    Operation("get_many_cold", "get_many(100), cold L1", 30, _get_many_cold, Target(0.5), shared_only=True),
    Operation("get_many_warm", "get_many(100), warm L1", 30, _get_many_warm),
    Operation("set", "set, 100 B str (read back tracked)", 300, _set, Target(1.0)),
    Operation("set_many", "set_many(100)", 30, _set_many, Target(0.5)),
    Operation("incr", "incr", 300, _incr, Target(1.0)),
    Operation("delete", "delete", 300, _delete),
    Operation("aget_hit", "async aget hit (L1), 100 B str", 300, _aget_hit, Target(0.02)),
    Operation("aset", "async aset, 100 B str", 300, _aset),
)  # fmt: skip

"""Where every process's counters meet: the `CounterStore` port and its Redis adapter.

The Redis adapter runs its commands through the cache's own Redis tier (an `Execute`
callable: the cache's connections, timeouts and circuit breaker), never a client of
its own. Per alias there are these keys (``<p>`` is `TIERCACHE["METRICS_KEY_PREFIX"]`
plus ``{<REDIS_PREFIX><alias>}``, e.g. ``tiercache:metrics:{dj:default}``; the braces
keep them on one Cluster slot):

- ``<p>`` a hash of counters (``ns|user|l1_hits`` → 42), summed over processes;
- ``<p>:epoch`` a number bumped by every reset, so that a process whose deltas
  predate a reset drops them instead of adding them to the fresh counters;
- ``<p>:reset`` the time of the last reset;
- ``<p>:workers`` a hash of process id → its last report (JSON, with the time);
- ``<p>:m:<minute>`` one hash per minute (lookups, errors, L2 latency buckets), each
  expiring after two hours: the time series is bounded by construction.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from returns.result import Failure, Result, Success

from tiercache import CacheError
from tiercache.commands import Command, Request

__all__ = [
    "SERIES_MINUTES",
    "CounterStore",
    "Execute",
    "Push",
    "RedisCounterStore",
    "StoreSnapshot",
]

#: Runs one Redis command or pipeline through the cache's tier; raises `CacheError`.
Execute = Callable[[Request], object]

#: Minutes of history the time series keeps (and the admin page draws).
SERIES_MINUTES = 60
_MINUTE_TTL = 2 * 3600  # seconds a minute bucket outlives its minute
_WORKER_FORGOTTEN_AFTER = 24 * 3600.0  # a report this old is deleted on read

# Deltas apply only if no reset happened since the pusher last looked (ARGV[1] = the
# epoch it knows, '' for none); the worker's report is kept either way.
# KEYS: counters, epoch, workers, minute. ARGV: epoch, process, report, minute ttl,
# number of counter pairs, then counter pairs, then minute pairs.
_ADD_SCRIPT = """
local epoch = redis.call('GET', KEYS[2]) or '0'
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if ARGV[1] ~= '' and ARGV[1] ~= epoch then
  return epoch
end
local last = 5 + 2 * tonumber(ARGV[5])
for i = 6, last, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV > last then
  for i = last + 1, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
return epoch
"""

# KEYS: counters, epoch, reset time, then the minute keys. ARGV: the time now.
_CLEAR_SCRIPT = """
for i = 1, #KEYS do
  if i ~= 2 and i ~= 3 then redis.call('DEL', KEYS[i]) end
end
redis.call('SET', KEYS[3], ARGV[1])
return redis.call('INCR', KEYS[2])
"""


@dataclass(frozen=True)
class Push:
    """What one process adds in one push."""

    #: Counter deltas since the last push that went through.
    deltas: Mapping[str, int]
    #: What the current minute's bucket keeps of them (`metrics` picks it).
    minute_deltas: Mapping[str, int]
    #: The reset epoch the deltas belong to ('': not known yet).
    epoch: str
    #: "host:pid" of the pushing process.
    process: str
    #: Its gauges for the per-worker table.
    report: Mapping[str, object]


@dataclass(frozen=True)
class StoreSnapshot:
    """What the store holds: summed counters, workers' reports, the last hour."""

    counts: Counter[str]
    epoch: str
    #: Process id → its last report, with ``age`` (seconds since it was made) added.
    workers: dict[str, dict[str, object]] = field(default_factory=dict)
    #: (minute since the epoch, its counters), oldest first, one per minute of the hour.
    minutes: list[tuple[int, Counter[str]]] = field(default_factory=list)
    #: Unix time of the last reset, if there was one.
    reset_at: float | None = None


class CounterStore(Protocol):
    """The port the metrics push into and read from; never raises for its backend."""

    def add(self, push: Push) -> Result[str, CacheError]:
        """Add the push's deltas unless a reset happened since its epoch; return the epoch."""
        ...

    def read(self) -> Result[StoreSnapshot, CacheError]:
        """Return the sums, the workers' reports and the last hour's minutes."""
        ...

    def clear(self) -> Result[str, CacheError]:
        """Drop the sums and the time series, start a new epoch; return it."""
        ...


class RedisCounterStore:
    """`CounterStore` in Redis, reached through the cache's own tier."""

    def __init__(
        self, execute: Execute, key: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.key = key
        self._execute = execute
        self._clock = clock
        self._epoch_key = f"{key}:epoch"
        self._reset_key = f"{key}:reset"
        self._workers_key = f"{key}:workers"

    def minute_key(self, minute: int) -> str:
        """Return the key of one minute's bucket."""
        return f"{self.key}:m:{minute}"

    def add(self, push: Push) -> Result[str, CacheError]:
        """Add the push's deltas unless a reset happened since its epoch; return the epoch."""
        now = self._clock()
        pairs = [(name, delta) for name, delta in push.deltas.items() if delta]
        minute_pairs = [(name, delta) for name, delta in push.minute_deltas.items() if delta]
        args: list[str | int] = [
            push.epoch,
            push.process,
            json.dumps({**push.report, "at": now}),
            _MINUTE_TTL,
            len(pairs),
        ]
        for name, delta in pairs + minute_pairs:
            args += [name, delta]
        keys = [self.key, self._epoch_key, self._workers_key, self.minute_key(_minute(now))]
        command: Command = ("EVAL", _ADD_SCRIPT, len(keys), *keys, *args)
        try:
            return Success(_text(self._execute(command)))
        except CacheError as error:
            return Failure(error)

    def read(self) -> Result[StoreSnapshot, CacheError]:
        """Return the sums, the reports and the minutes of the last hour, in one trip."""
        now = self._clock()
        minutes = list(range(_minute(now) - SERIES_MINUTES + 1, _minute(now) + 1))
        pipeline: list[Command] = [
            ("HGETALL", self.key),
            ("GET", self._epoch_key),
            ("GET", self._reset_key),
            ("HGETALL", self._workers_key),
            *(("HGETALL", self.minute_key(minute)) for minute in minutes),
        ]
        try:
            replies = self._execute(pipeline)
        except CacheError as error:
            return Failure(error)
        assert isinstance(replies, list)
        counts, epoch, reset_at, raw_workers, *raw_minutes = replies
        workers: dict[str, dict[str, object]] = {}
        forgotten: list[str] = []
        for process, raw in _pairs(raw_workers).items():
            report = json.loads(raw)
            report["age"] = max(0.0, now - float(report.get("at", 0.0)))
            if report["age"] > _WORKER_FORGOTTEN_AFTER:
                forgotten.append(process)
            else:
                workers[process] = report
        if forgotten:
            self._forget(forgotten)
        return Success(
            StoreSnapshot(
                counts=_counts(counts),
                epoch=_text(epoch) if epoch is not None else "0",
                workers=dict(sorted(workers.items())),
                minutes=[
                    (minute, _counts(raw)) for minute, raw in zip(minutes, raw_minutes, strict=True)
                ],
                reset_at=float(_text(reset_at)) if reset_at is not None else None,
            )
        )

    def clear(self) -> Result[str, CacheError]:
        """Drop the sums and the time series, note the time, start a new epoch."""
        now = self._clock()
        recent = range(_minute(now) - _MINUTE_TTL // 60, _minute(now) + 1)
        keys = [self.key, self._epoch_key, self._reset_key, *map(self.minute_key, recent)]
        command: Command = ("EVAL", _CLEAR_SCRIPT, len(keys), *keys, repr(now))
        try:
            return Success(_text(self._execute(command)))
        except CacheError as error:
            return Failure(error)

    def _forget(self, processes: list[str]) -> None:
        # Housekeeping: if it fails, the next read tries again.
        with contextlib.suppress(CacheError):
            self._execute(("HDEL", self._workers_key, *processes))


def _minute(now: float) -> int:
    return int(now // 60)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(reply: object) -> dict[str, str]:
    """Return a HGETALL reply as text pairs, whether it came as a dict or a flat list."""
    if isinstance(reply, dict):
        return {_text(name): _text(value) for name, value in reply.items()}
    if isinstance(reply, list):
        return {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}
    return {}


def _counts(reply: object) -> Counter[str]:
    return Counter({name: int(value) for name, value in _pairs(reply).items()})

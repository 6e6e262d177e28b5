"""The Redis side of the metrics: every process adds its counter deltas into one hash.

Per alias there are three keys (``<prefix>`` is `TIERCACHE["METRICS_KEY_PREFIX"]` plus
the alias's `REDIS_PREFIX` and name, e.g. ``tiercache:metrics:dj:default``):

- ``<prefix>`` a hash of counters (``ns|user|l1_hits`` → 42), summed over processes;
- ``<prefix>:epoch`` a number bumped by every reset, so that a process whose deltas
  predate a reset drops them instead of adding them to the fresh counters;
- ``<prefix>:processes`` a hash of process id → time of its last push.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry
from returns.result import Failure, Result, Success

from tiercache import CacheUnavailable

__all__ = ["CounterSnapshot", "RedisCounterSink"]

# Deltas apply only if no reset happened since the pusher last looked (ARGV[1] = the
# epoch it knows, '' for none). Returns the current epoch either way.
_ADD_SCRIPT = """
local epoch = redis.call('GET', KEYS[2]) or '0'
if ARGV[1] ~= '' and ARGV[1] ~= epoch then
  return epoch
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return epoch
"""

# A process that has not pushed for this long no longer counts as reporting.
_PROCESS_STALE_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class CounterSnapshot:
    """The counters summed over every process, as Redis holds them."""

    counts: Counter[str]
    epoch: str
    #: Process id → seconds since its last push.
    processes: dict[str, float] = field(default_factory=dict)


class RedisCounterSink:
    """Adds counter deltas into Redis and reads the sums back; never raises for Redis."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        connect_timeout: float = 0.25,
        socket_timeout: float = 0.5,
    ) -> None:
        self.key = key
        self._epoch_key = f"{key}:epoch"
        self._processes_key = f"{key}:processes"
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            # A sick Redis must cost one short timeout, not a series of retries.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._add = self._client.register_script(_ADD_SCRIPT)

    def add(
        self, deltas: Mapping[str, int], *, epoch: str, process: str
    ) -> Result[str, CacheUnavailable]:
        """Add `deltas` unless Redis was reset since `epoch` ('' : unknown); return its epoch."""
        args: list[str | int] = [epoch, process, repr(time.time())]
        for name, delta in deltas.items():
            if delta:
                args += [name, delta]
        try:
            keys = [self.key, self._epoch_key, self._processes_key]
            current = self._add(keys=keys, args=args)
        except (redis.exceptions.RedisError, OSError) as error:
            return Failure(_unavailable(error))
        return Success(_text(current))

    def read(self) -> Result[CounterSnapshot, CacheUnavailable]:
        """Return the summed counters, the epoch and the reporting processes."""
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.key)
                pipe.get(self._epoch_key)
                pipe.hgetall(self._processes_key)
                raw_counts, raw_epoch, raw_processes = pipe.execute()
        except (redis.exceptions.RedisError, OSError) as error:
            return Failure(_unavailable(error))
        counts: Counter[str] = Counter(
            {_text(name): int(value) for name, value in raw_counts.items()}
        )
        now = time.time()
        processes: dict[str, float] = {}
        stale: list[str] = []
        for name, pushed_at in raw_processes.items():
            age = max(0.0, now - float(pushed_at))
            if age > _PROCESS_STALE_AFTER:
                stale.append(_text(name))
            else:
                processes[_text(name)] = age
        if stale:
            self._forget_processes(stale)
        epoch = _text(raw_epoch) if raw_epoch is not None else "0"
        return Success(CounterSnapshot(counts, epoch, processes))

    def clear(self) -> Result[str, CacheUnavailable]:
        """Delete the summed counters and start a new epoch; return it."""
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self.key)
                pipe.incr(self._epoch_key)
                _, epoch = pipe.execute()
        except (redis.exceptions.RedisError, OSError) as error:
            return Failure(_unavailable(error))
        return Success(str(epoch))

    def close(self) -> None:
        """Close the connections (best effort)."""
        self._client.close()

    def _forget_processes(self, names: list[str]) -> None:
        # Pruning is housekeeping: if it fails, the next read tries again.
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            self._client.hdel(self._processes_key, *names)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _unavailable(error: Exception) -> CacheUnavailable:
    return CacheUnavailable(f"metrics store unreachable: {type(error).__name__}: {error}")

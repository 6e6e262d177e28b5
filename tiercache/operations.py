"""The 15 protocol operations as flows: validation, key prefix and result shaping.

Written once; `TieredCache` and `AsyncTieredCache` only drive these flows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Iterable, Mapping
from typing import TypeVar

from returns.result import Failure, Result, Success

from tiercache.errors import CacheError, CorruptData, InvalidKey, NotAnInteger, NotSerializable
from tiercache.globs import escape_glob
from tiercache.keys import (
    DEFAULT_NAMESPACE,
    KeyMemo,
    check_key,
    check_pattern,
    check_ttl,
    namespace_of,
)
from tiercache.memory import MISSING
from tiercache.policy import Flow, Outcome, TierPolicy, as_flow
from tiercache.ports import JSONObject
from tiercache.stampede import Loading, Plan, Stampede

__all__ = ["CacheOperations"]

T = TypeVar("T")
Y = TypeVar("Y")


def _value_or_none(flow: Flow[object]) -> Flow[str | None]:
    found = yield from flow
    return found.map(lambda value: None if value is MISSING else value)  # type: ignore[arg-type,return-value]


def _check_amount(key: object, amount: object) -> NotAnInteger | None:
    """Return why `amount` cannot be added to a Redis integer, or None when it can."""
    name = key if isinstance(key, str) else None
    if type(amount) is not int:
        kind = type(amount).__name__
        return NotAnInteger(f"amount for key {key!r} must be an int, got {kind}", key=name)
    if not -(2**63) <= amount < 2**63:
        return NotAnInteger(f"amount for key {key!r} is out of the 64-bit range", key=name)
    return None


def _parse_json(key: str, text: str) -> Result[JSONObject | None, CacheError]:
    try:
        value = json.loads(text)
    except ValueError:
        return Failure(CorruptData(f"value of key {key!r} is not valid JSON", key=key))
    if not isinstance(value, dict):
        return Failure(CorruptData(f"value of key {key!r} is not a JSON object", key=key))
    return Success(value)


class CacheOperations:
    """Turns protocol calls into policy flows over prefixed keys."""

    def __init__(
        self,
        policy: TierPolicy,
        stampede: Stampede,
        *,
        key_prefix: str = "",
        namespace_separator: str = ":",
        default_ttl: int | None = None,
    ) -> None:
        self.policy = policy
        self.stampede = stampede
        self.key_prefix = key_prefix
        self.separator = namespace_separator
        self.default_ttl = default_ttl
        self._own_keys = escape_glob(key_prefix)
        self._keys = KeyMemo(self._resolve)

    def _resolve(self, key: str) -> tuple[str, str] | None:
        """Return the Redis key and namespace of a valid `key`, or None."""
        if check_key(key) is not None:
            return None
        return self.key_prefix + key, namespace_of(key, self.separator)

    def _key(self, key: object) -> tuple[str, str] | CacheError:
        """Return the Redis key and namespace of `key`, or why it is not a key."""
        resolved = self._keys[key] if type(key) is str else None
        return resolved or check_key(key) or InvalidKey(f"key {key!r} is not valid")

    def _invalid(self, error: CacheError, key: object = None) -> Failure[CacheError]:
        namespace = namespace_of(key, self.separator) if isinstance(key, str) else None
        return self.policy.failed(namespace or DEFAULT_NAMESPACE, error)

    def _ttl(self, ttl: int | None, key: str) -> int | CacheError | None:
        if ttl is None:
            return self.default_ttl
        return check_ttl(ttl, key) or ttl

    def _named(
        self, flow: Generator[Y, object, Result[T, CacheError]]
    ) -> Generator[Y, object, Result[T, CacheError]]:
        """Run a policy flow; its failure names the caller's key, not the prefixed one."""
        result = yield from flow
        if isinstance(result, Failure):
            error = result.failure()
            if error.key is not None and error.key.startswith(self.key_prefix):
                error.named(error.key[len(self.key_prefix) :])
        return result

    def get(self, key: str) -> Outcome[str | None]:
        """Return the value of `key`; an L1 hit builds no flow (see `TierPolicy.get`)."""
        # `_key` inlined: this runs on every L1 hit ("get hit (L1)" in benchmarks/).
        resolved = self._keys[key] if type(key) is str else None
        if resolved is None:
            return self._invalid(check_key(key) or InvalidKey(f"key {key!r} is not valid"))
        held = self.policy.lookup(*resolved)
        if held is not MISSING:
            return Success(held)  # type: ignore[arg-type]  # a str, as this cache stores
        return _value_or_none(self._named(as_flow(self.policy.get(*resolved))))

    def get_json(self, key: str) -> Flow[JSONObject | None]:
        text = yield from as_flow(self.get(key))
        match text:
            case Success(str() as found):
                parsed = _parse_json(key, found)
                if isinstance(parsed, Failure):
                    return self._invalid(parsed.failure(), key)
                return parsed
            case _:
                return text.map(lambda _: None)

    def set(self, key: str, value: str, ttl: int | None = None) -> Flow[None]:
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        seconds = self._ttl(ttl, key)
        if isinstance(seconds, CacheError):
            return self._invalid(seconds, key)
        stored = yield from self._named(self.policy.set(*resolved, value, seconds))
        return stored.map(lambda _: None)

    def set_json(self, key: str, value: Mapping[str, object], ttl: int | None = None) -> Flow[None]:
        if not isinstance(value, Mapping):
            error = NotSerializable(
                f"value for key {key!r} must be a dict, got {type(value).__name__}", key=key
            )
            return self._invalid(error, key)
        try:
            text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            error = NotSerializable(f"value for key {key!r} is not JSON-serialisable: {exc}")
            error.key = key
            return self._invalid(error, key)
        return (yield from self.set(key, text, ttl))

    def delete(self, key: str) -> Flow[bool]:
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        full, namespace = resolved
        removed = yield from self._named(self.policy.delete([full], namespace))
        return removed.map(bool)

    def exists(self, key: str) -> Flow[bool]:
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        return (yield from self._named(self.policy.exists(*resolved)))

    def expire(self, key: str, seconds: int) -> Flow[bool]:
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        if (bad := check_ttl(seconds, key)) is not None:
            return self._invalid(bad, key)
        return (yield from self._named(self.policy.expire(*resolved, seconds)))

    def ttl(self, key: str) -> Flow[int | None]:
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        left = yield from self._named(self.policy.ttl(*resolved))
        return left.map(lambda s: math.ceil(s) if isinstance(s, float | int) else None)

    def increment(self, key: str, amount: int = 1) -> Flow[int]:
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        if (wrong := _check_amount(key, amount)) is not None:
            return self._invalid(wrong, key)
        total = yield from self._named(self.policy.increment(*resolved, amount))
        return total.map(lambda n: n or 0)

    def decrement(self, key: str, amount: int = 1) -> Flow[int]:
        if (bad := check_key(key) or _check_amount(key, amount)) is not None:
            return self._invalid(bad, key)
        return (yield from self.increment(key, -amount))

    def flush(self) -> Flow[None]:
        removed = yield from self.policy.delete_matching(self._own_keys + "*", DEFAULT_NAMESPACE)
        return removed.map(lambda _: None)

    def ping(self) -> Flow[bool]:
        return (yield from self.policy.ping())

    def delete_pattern(self, pattern: str) -> Flow[int]:
        if (bad := check_pattern(pattern)) is not None:
            return self._invalid(bad)
        return (
            yield from self.policy.delete_matching(
                self._own_keys + pattern, namespace_of(pattern, self.separator)
            )
        )

    def get_many(self, keys: Iterable[str]) -> Flow[dict[str, str | None]]:
        try:
            wanted = list(keys) if not isinstance(keys, str) else [keys]
        except TypeError:
            return self._invalid(InvalidKey(f"keys must be an iterable of str, not {keys!r}"))
        # `_key` inlined for the valid keys: one memo lookup each, no call per key.
        memo = self._keys
        pairs: list[tuple[str, str]] = []
        for key in wanted:
            resolved = memo[key] if type(key) is str else None
            if resolved is None:
                return self._invalid(check_key(key) or InvalidKey(f"key {key!r} is not valid"))
            pairs.append(resolved)
        found = yield from self._named(self.policy.get_many(pairs))
        return found.map(
            lambda hits: {
                key: hits.get(full)  # type: ignore[misc]
                for key, (full, _) in zip(wanted, pairs, strict=True)
            }
        )

    def set_many(self, mapping: Mapping[str, str], ttl: int | None = None) -> Flow[None]:
        if not isinstance(mapping, Mapping):
            kind = type(mapping).__name__
            return self._invalid(NotSerializable(f"set_many needs a mapping, got {kind}"))
        items: list[tuple[str, str, object]] = []
        for key, value in mapping.items():
            resolved = self._key(key)
            if isinstance(resolved, CacheError):
                return self._invalid(resolved)
            items.append((*resolved, value))
        seconds = self._ttl(ttl, "")
        if isinstance(seconds, CacheError):
            return self._invalid(seconds)
        stored = yield from self._named(self.policy.set_many(items, seconds))
        return stored.map(lambda _: None)

    def get_or_set(self, key: str, plan: Plan | CacheError) -> Loading | Failure[CacheError]:
        """Return the get_or_set flow of `key`, or the Failure its arguments deserve."""
        resolved = self._key(key)
        if isinstance(resolved, CacheError):
            return self._invalid(resolved)
        if isinstance(plan, CacheError):
            return self._invalid(plan.named(key), key)
        return self._named(self.stampede.flow(*resolved, plan))

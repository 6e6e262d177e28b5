"""Validation of keys, TTLs and patterns, and the namespace of a key."""

from __future__ import annotations

import re
from collections.abc import Callable

from tiercache.errors import InvalidKey, InvalidTTL

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_KEY_LENGTH",
    "MAX_TTL_SECONDS",
    "KeyMemo",
    "check_key",
    "check_pattern",
    "check_ttl",
    "namespace_of",
]

MAX_KEY_LENGTH = 1024
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
#: Namespace of keys that have no separator in them.
DEFAULT_NAMESPACE = "default"

# One precompiled search is far cheaper than a per-character loop on the hot path.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: object, max_length: int = MAX_KEY_LENGTH) -> InvalidKey | None:
    """Return why `key` is not a usable key, or None when it is."""
    if type(key) is not str:
        return InvalidKey(f"key must be a str, got {type(key).__name__}")
    if not key:
        return InvalidKey("key must not be empty", key=key)
    if len(key) > max_length:
        return InvalidKey(
            f"key {key[:40]!r}... is {len(key)} characters, over the limit of {max_length}",
            key=key[:40],
        )
    if _CONTROL_CHARACTERS.search(key):
        return InvalidKey(f"key {key!r} contains a control character", key=key)
    return None


def check_pattern(pattern: object) -> InvalidKey | None:
    """Return why `pattern` is not a usable glob pattern, or None when it is."""
    if type(pattern) is not str or not pattern:
        return InvalidKey(f"pattern must be a non-empty str, got {pattern!r}")
    if _CONTROL_CHARACTERS.search(pattern):
        return InvalidKey(f"pattern {pattern!r} contains a control character")
    return None


def check_ttl(ttl: object, key: str | None = None) -> InvalidTTL | None:
    """Return why `ttl` is not a positive whole number of seconds in range, or None."""
    where = f" for key {key!r}" if key else ""
    if type(ttl) is not int:  # bool is an int subclass but never a TTL
        return InvalidTTL(
            f"TTL{where} must be an int of seconds, got {type(ttl).__name__}", key=key
        )
    if ttl <= 0 or ttl > MAX_TTL_SECONDS:
        return InvalidTTL(f"TTL {ttl}{where} is out of range 1..{MAX_TTL_SECONDS} seconds", key=key)
    return None


def namespace_of(key: str, separator: str = ":") -> str:
    """Return the namespace of `key`: the text before the first separator."""
    head, found, _ = key.partition(separator)
    return head if found and head else DEFAULT_NAMESPACE


class KeyMemo(dict[str, tuple[str, str] | None]):
    """What keys resolve to, (Redis key, namespace), remembered: `memo[key]`.

    A remembered key costs one C-level dict lookup, with no Python call: the L1-hit
    path goes through here (see `benchmarks/`, "get hit (L1)"). `resolve` answers for
    a new str key; None, for a key that must not be remembered (invalid, or one whose
    every use must be checked again), is answered but not kept. Look up str keys only.
    """

    def __init__(self, resolve: Callable[[str], tuple[str, str] | None], size: int = 4096) -> None:
        super().__init__()
        self._resolve = resolve
        self._size = size

    def __missing__(self, key: str) -> tuple[str, str] | None:
        resolved = self._resolve(key)
        if resolved is not None:
            if len(self) >= self._size:
                self.clear()  # cheaper than keeping an LRU order on every hit
            self[key] = resolved
        return resolved

"""Error values: every cache trouble is a `CacheError` subclass that names its cause."""

from __future__ import annotations

from typing import Self

__all__ = [
    "CacheError",
    "CacheReadOnly",
    "CacheTimeout",
    "CacheUnavailable",
    "CircuitOpen",
    "CorruptData",
    "DomainError",
    "InvalidKey",
    "InvalidTTL",
    "LoaderFailed",
    "NotAnInteger",
    "NotSerializable",
    "ValueTooLarge",
]


class DomainError(Exception):
    """Base of every error value tiercache returns."""


class CacheError(DomainError):
    """A cache operation did not happen; the message says why and for which key.

    `key` is the key as the caller wrote it. Below the shells only the stored key
    (with its prefix) is known, so an error made there writes `{key}` in its message
    and the shell names the caller's key with `named`: a message never shows a
    prefixed Redis key.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def named(self, key: str) -> Self:
        """Make this error name `key`, the caller's key; return it."""
        self.key = key
        return self

    def __str__(self) -> str:
        return super().__str__().replace("{key}", repr(self.key))


class CacheUnavailable(CacheError):
    """The L2 store could not be reached (connection refused, reset, DNS...)."""


class CacheTimeout(CacheUnavailable):
    """The L2 store did not answer within the socket timeout."""


class CacheReadOnly(CacheUnavailable):
    """The L2 store refused a write (a read-only replica, or out of memory)."""


class CircuitOpen(CacheUnavailable):
    """The circuit breaker is open: no network attempt was made."""


class InvalidKey(CacheError):
    """The key is empty, not a str, too long, or has control characters."""


class InvalidTTL(CacheError):
    """The TTL is not a positive int of seconds within range."""


class NotSerializable(CacheError):
    """The value has the wrong type or cannot be serialised."""


class ValueTooLarge(CacheError):
    """The serialised value is over the configured size limit."""


class NotAnInteger(CacheError):
    """increment/decrement met a value that is not an integer."""


class CorruptData(CacheError):
    """Bytes read back from L2 could not be decoded; treated as a miss."""


class LoaderFailed(CacheError):
    """get_or_set's loader raised (its exception is the `__cause__`) and no stale value
    was allowed to stand in for it."""

"""Codecs: how a value becomes bytes for Redis and what L1 holds for it."""

from __future__ import annotations

import re
from typing import Protocol

from tiercache.errors import CorruptData, NotSerializable

__all__ = ["Codec", "TextCodec"]

# What Redis INCRBY accepts: no sign on zero, no leading zeros, and within 64 bits.
_INTEGER = re.compile(rb"0|-?[1-9]\d{0,18}")
_INT64 = range(-(2**63), 2**63)


class Codec(Protocol):
    """Turns values into Redis bytes and L1 entries and back."""

    def dumps(self, key: str, value: object) -> bytes:
        """Return the bytes stored at the Redis key `key`; raise `NotSerializable`.

        The key lets a codec bind the bytes to it (the Django codec signs both).
        """
        ...

    def loads(self, key: str, raw: bytes) -> object:
        """Return the value of bytes read from the Redis key `key`; raise `CorruptData`."""
        ...

    def to_l1(self, value: object, raw: bytes) -> object:
        """Return what L1 holds for `value` (immutable, or a copy made from `raw`)."""
        ...

    def from_l1(self, held: object) -> object:
        """Return a value for the caller that mutating cannot change `held`."""
        ...

    def to_int(self, value: object) -> int | None:
        """Return `value` as an int if it is one, for increments in an L1-only cache."""
        ...

    def from_int(self, number: int) -> object:
        """Return the value an increment stores."""
        ...


class TextCodec:
    """Stores str values as UTF-8; str is immutable, so L1 holds the value itself."""

    def dumps(self, key: str, value: object) -> bytes:
        if type(value) is not str:
            raise NotSerializable(f"value must be a str, got {type(value).__name__}")
        try:
            return value.encode()
        except UnicodeEncodeError as error:  # lone surrogates
            raise NotSerializable(f"value is not valid text: {error.reason}") from None

    def loads(self, key: str, raw: bytes) -> object:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise CorruptData("value in Redis is not UTF-8 text") from None

    def to_l1(self, value: object, raw: bytes) -> object:
        return value

    def from_l1(self, held: object) -> object:
        return held

    def to_int(self, value: object) -> int | None:
        if isinstance(value, str) and _INTEGER.fullmatch(value.encode()):
            number = int(value)
            return number if number in _INT64 else None
        return None

    def from_int(self, number: int) -> object:
        return str(number)

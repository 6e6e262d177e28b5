"""The codec of the Django backend: any picklable value, copied on every L1 read."""

from __future__ import annotations

import pickle
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django_tiercache.serializers import PICKLE_MARK, Serializer, SignedPickleSerializer

__all__ = ["DjangoCodec"]

# Values of these types cannot be changed by a caller, so L1 may hand out the very object.
_IMMUTABLE: frozenset[type] = frozenset(
    {
        str,
        bytes,
        int,
        float,
        bool,
        type(None),
        complex,
        Decimal,
        date,
        datetime,
        time,
        timedelta,
        uuid.UUID,
        range,
    }
)


def _is_immutable(value: object, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _IMMUTABLE:
        return True
    if (kind is tuple or kind is frozenset) and depth < 3:
        return all(_is_immutable(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    return False


class _Frozen:
    """A value L1 holds as bytes, so each reader gets a fresh copy."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class _FrozenPickle(_Frozen):
    """A pickle we signed and verified already: unpickle without checking again."""

    __slots__ = ()


class DjangoCodec:
    """Implements `tiercache.codecs.Codec` over a Django-style serializer."""

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer
        self.dumps = serializer.dumps
        self.loads = serializer.loads
        self._signed = isinstance(serializer, SignedPickleSerializer)

    def to_l1(self, value: object, raw: bytes) -> object:
        if _is_immutable(value):
            return value
        if self._signed and raw[:1] == PICKLE_MARK:
            return _FrozenPickle(raw[33:])
        return _Frozen(raw if raw else self.serializer.dumps(value))

    def from_l1(self, held: object) -> object:
        if type(held) is _FrozenPickle:
            return pickle.loads(held.payload)
        if type(held) is _Frozen:
            return self.serializer.loads(held.payload)
        return held

    def to_int(self, value: object) -> int | None:
        return value if type(value) is int else None

    def from_int(self, number: int) -> object:
        return number

"""The envelope of a value in Redis: its expiry travels with it, so a plain GET suffices.

L1 must never keep a value longer than Redis does. Asking Redis for the TTL of every
value read (a Lua script running GET and PTTL per key) cost more than the read itself
for batches, so each stored value starts with its absolute expiry instead:

    b"@" + 13 ASCII digits (Unix time in ms; all zeros: no expiry) + the codec's bytes

Integers stay bare digits, because Redis INCRBY must keep working on them; a reader
asks PTTL for those (and for any value another tool wrote without an envelope).
Expiry times are wall-clock times of the writing host, so hosts' clocks must agree
(NTP): a reader whose clock lags the writer's by d seconds may keep a value d seconds
longer, and never longer than its L1 TTL.
"""

from __future__ import annotations

import enum
import re
from typing import Final, Literal

__all__ = ["HEADER_SIZE", "MARK", "UNKNOWN", "stamp", "unwrap", "wrap"]

MARK: Final = b"@"
_DIGITS = 13
HEADER_SIZE: Final = 1 + _DIGITS
_NO_EXPIRY: Final = b"0" * _DIGITS
_LAST_MS = 10**_DIGITS - 1  # the year 2286; later expiries are stored as "none"

# What Redis INCRBY accepts as an integer: such values must stay bare.
_BARE = re.compile(rb"0|-?[1-9]\d{0,18}")
_DIGIT_OR_SIGN = frozenset(b"-0123456789")


class _Unknown(enum.Enum):
    """An enum member, so type checkers narrow `left is UNKNOWN` as they do `is None`."""

    UNKNOWN = "UNKNOWN"


#: Seconds left of a bare value: only PTTL can tell.
UNKNOWN: Final = _Unknown.UNKNOWN


def stamp(expires_at_ms: int | None) -> bytes:
    """Return the 13 digits that record `expires_at_ms` (None: no expiry)."""
    if expires_at_ms is None or not 0 < expires_at_ms <= _LAST_MS:
        return _NO_EXPIRY
    return b"%013d" % expires_at_ms


def wrap(raw: bytes, header: bytes) -> bytes:
    """Return what Redis stores for the codec bytes `raw` (`header` from `stamp`)."""
    if raw and raw[0] in _DIGIT_OR_SIGN and _BARE.fullmatch(raw):
        return raw
    return MARK + header + raw


def unwrap(stored: bytes, now_ms: float) -> tuple[bytes, float | Literal[_Unknown.UNKNOWN] | None]:
    """Return the codec bytes in `stored` and the seconds they have left.

    None means no expiry; UNKNOWN a bare value (an integer, or written by another
    tool); zero or less, a value that expired by our clock but not yet by Redis's.
    """
    if stored[:1] != MARK:
        return stored, UNKNOWN
    digits = stored[1:HEADER_SIZE]
    if not digits.isdigit() or len(digits) != _DIGITS:
        return stored, UNKNOWN  # text another tool wrote that merely starts with '@'
    expires_at_ms = int(digits)
    payload = stored[HEADER_SIZE:]
    if expires_at_ms == 0:
        return payload, None
    return payload, (expires_at_ms - now_ms) / 1000

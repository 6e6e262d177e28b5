"""Invalidation messages that processes exchange over Redis pub/sub."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

__all__ = ["Invalidation", "decode", "encode"]

Op = Literal["keys", "pattern", "clear"]


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Drop `keys`, or the keys matching `pattern` (a Redis glob), or everything."""

    sender: str
    op: Op
    keys: tuple[str, ...] = ()
    pattern: str = ""


def encode(sender: str, op: Op, keys: tuple[str, ...] | list[str] = (), pattern: str = "") -> str:
    """Return the message text for an invalidation."""
    return json.dumps([sender, op, list(keys), pattern], separators=(",", ":"))


def decode(data: bytes | str) -> Invalidation | None:
    """Return the invalidation in `data`, or None if it is not one of ours."""
    try:
        sender, op, keys, pattern = json.loads(data)
    except (ValueError, TypeError):
        return None
    if op not in ("keys", "pattern", "clear") or not isinstance(sender, str):
        return None
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        return None
    return Invalidation(sender, op, tuple(keys), pattern if isinstance(pattern, str) else "")

"""Invalidation messages that processes exchange over Redis pub/sub."""

from __future__ import annotations

import json
import re
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


# Text that JSON writes as is between quotes: printable ASCII but '"' and backslash.
_VERBATIM = re.compile(r"[ !#-\[\]-~]*")


def encode(sender: str, op: Op, keys: tuple[str, ...] | list[str] = (), pattern: str = "") -> str:
    """Return the message text for an invalidation (JSON, written by hand when it may be)."""
    if op == "keys" and len(keys) == 1 and _VERBATIM.fullmatch(keys[0] + sender):
        return f'["{sender}","keys",["{keys[0]}"],""]'  # a write of one key: most messages
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

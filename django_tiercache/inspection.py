"""One key as this process's L1 holds it and as Redis holds it (`manage.py tiercache inspect`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tiercache import CacheError, CacheUnavailable, envelope
from tiercache.codecs import Codec
from tiercache.commands import Request
from tiercache.memory import MemoryTier
from tiercache.ports import HeldEntry

__all__ = ["KeyInspection", "RedisCopy", "inspect_key"]


@dataclass(frozen=True)
class RedisCopy:
    """The key as Redis holds it; sizes in bytes, times in seconds."""

    #: Redis's TYPE of the key ("none": no such key).
    type: str
    #: Seconds left by PTTL (None: no expiry).
    ttl: float | None = None
    #: OBJECT ENCODING (e.g. "embstr", "raw", "int"), if the server says.
    encoding: str | None = None
    #: MEMORY USAGE: what the key costs the server, overhead included, if the server says.
    memory_usage: int | None = None
    #: STRLEN: the bytes stored (envelope, signature and payload).
    length: int | None = None
    #: The type name of the decoded value, or None when it does not decode.
    value_type: str | None = None
    #: Why the stored bytes do not decode (a bad signature, not a value of ours...).
    problem: str | None = None
    #: The decoded value: shown only when asked for.
    value: object = None


@dataclass(frozen=True)
class KeyInspection:
    """What `inspect_key` found."""

    key: str
    redis_key: str
    #: How this process's L1 holds the key (None: not held, or no L1).
    l1: HeldEntry | None
    #: How Redis holds it (None: no Redis tier, or Redis could not be asked).
    redis: RedisCopy | None
    #: Why Redis could not be asked.
    redis_error: str | None = None


def inspect_key(
    key: str,
    redis_key: str,
    *,
    l1: MemoryTier | None,
    codec: Codec,
    execute: Callable[[Request], object] | None,
) -> KeyInspection:
    """Look at `redis_key` in both tiers without changing either (no LRU touch, no fill)."""
    held = l1.entry(redis_key, codec.from_l1) if l1 is not None else None
    if execute is None:
        return KeyInspection(key, redis_key, held, None)
    try:
        copy = _redis_copy(redis_key, codec, execute)
    except CacheError as error:
        return KeyInspection(key, redis_key, held, None, str(error))
    return KeyInspection(key, redis_key, held, copy)


def _redis_copy(key: str, codec: Codec, execute: Callable[[Request], object]) -> RedisCopy:
    kind = _text(execute(("TYPE", key))) or "none"
    if kind == "none":
        return RedisCopy("none")
    pttl = execute(("PTTL", key))
    ttl = pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else None
    encoding = _text(_optional(execute, ("OBJECT", "ENCODING", key)))
    usage = _optional(execute, ("MEMORY", "USAGE", key))
    copy = RedisCopy(
        kind, ttl, encoding, usage if isinstance(usage, int) else None, problem="not a string"
    )
    if kind != "string":
        return copy
    stored = execute(("GET", key))
    if not isinstance(stored, bytes):
        return RedisCopy("none")  # gone between the two commands
    raw, _ = envelope.unwrap(stored, 0)
    try:
        value = codec.loads(key, raw)
    except CacheError as error:
        return RedisCopy(kind, ttl, encoding, copy.memory_usage, len(stored), problem=str(error))
    return RedisCopy(
        kind, ttl, encoding, copy.memory_usage, len(stored), type(value).__name__, value=value
    )


def _optional(execute: Callable[[Request], object], command: tuple[str, ...]) -> object:
    """Return the reply, or None if this server refuses the command (some managed ones do)."""
    try:
        return execute(command)
    except CacheUnavailable:
        raise
    except CacheError:
        return None


def _text(reply: object) -> str | None:
    if isinstance(reply, bytes):
        return reply.decode()
    return reply if isinstance(reply, str) else None

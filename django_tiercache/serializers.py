"""Serializers: pickles signed with a MAC (keyed BLAKE2b), so planted bytes are never unpickled.

Ints stay raw digits, so Redis INCRBY works on them and `incr` stays atomic. Strings,
the most common value, are their UTF-8 bytes after a mark: decoding text runs no code,
so they need neither a pickle nor a MAC (a quarter of the cost of a small str).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from collections.abc import Sequence
from typing import Protocol

from django.core.serializers.json import DjangoJSONEncoder

from tiercache.errors import CorruptData, NotSerializable

__all__ = ["PICKLE_MARK", "TEXT_MARK", "JSONSerializer", "Serializer", "SignedPickleSerializer"]

#: First byte of a signed pickle; digits (and '-') can never start one.
PICKLE_MARK = b"$"
#: First byte of a str stored as UTF-8.
TEXT_MARK = b"'"
_TEXT = TEXT_MARK[0]
_DIGEST = 32
#: A signed pickle is PICKLE_MARK, the MAC, then the pickle.
_PICKLE_START = 1 + _DIGEST


def _mac_key(secret: str | bytes) -> bytes:
    """Return the 32-byte MAC key derived from a secret of any length."""
    # Keyed BLAKE2b is a MAC in one pass (HMAC-SHA256 hashes twice: ~3x slower here);
    # its key is at most 64 bytes, so derive one of 32 from any secret.
    secret = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(b"django_tiercache.signing:" + secret).digest()


def _mac(secret: bytes, key: str, payload: bytes) -> bytes:
    """Return the MAC of `payload` stored at `key`."""
    mac = hashlib.blake2b(key=secret, digest_size=_DIGEST)
    encoded = key.encode("utf-8", "surrogatepass")
    # The length first, so that no (key, payload) pair reads as another.
    mac.update(len(encoded).to_bytes(4, "big"))
    mac.update(encoded)
    mac.update(payload)
    return mac.digest()


class Serializer(Protocol):
    """Turns any value into the bytes Redis stores under a key, and back.

    The backend builds it as `factory(signing_key, fallback_keys)` (see `SERIALIZER`).
    """

    def dumps(self, key: str, value: object) -> bytes:
        """Return the bytes stored for `value` at the Redis key `key`; raise `NotSerializable`."""
        ...

    def loads(self, key: str, raw: bytes) -> object:
        """Return the value of `raw`, read from the Redis key `key`; raise `CorruptData`."""
        ...

    def pickle_start(self, raw: bytes) -> int | None:
        """Return where a plain pickle starts in bytes this serializer made, or None.

        L1 keeps mutable values as pickles (each reader gets a copy); this spares a
        second pickling of a value already pickled for Redis.
        """
        ...


class SignedPickleSerializer:
    """Raw digits for ints; TEXT_MARK + UTF-8 for str; else MARK + MAC + pickle.

    The MAC (keyed BLAKE2b) covers the Redis key as well as the pickle, so a value
    copied to another key is refused like a forged one. It is made with `signing_key`;
    a value signed with one of `fallback_keys` (a key being rotated out) still reads.
    """

    def __init__(
        self,
        signing_key: str | bytes,
        fallback_keys: Sequence[str | bytes] = (),
        protocol: int = pickle.HIGHEST_PROTOCOL,
    ) -> None:
        self._keys = [_mac_key(secret) for secret in (signing_key, *fallback_keys)]
        self.protocol = protocol

    def dumps(self, key: str, value: object) -> bytes:
        kind = type(value)
        if kind is str:  # not a subclass: it must come back as the same type
            try:
                return TEXT_MARK + str.encode(value)  # type: ignore[arg-type]
            except UnicodeEncodeError:  # lone surrogates: pickle keeps them
                pass
        elif kind is int:  # not bool: True must come back as True
            return str(value).encode()
        try:
            payload = pickle.dumps(value, self.protocol)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as error:
            raise NotSerializable(
                f"value of type {type(value).__name__} cannot be pickled: {error}"
            ) from None
        return PICKLE_MARK + _mac(self._keys[0], key, payload) + payload

    def loads(self, key: str, raw: bytes) -> object:
        if raw and raw[0] == _TEXT:
            try:
                return raw[1:].decode()
            except UnicodeDecodeError:
                raise CorruptData("value in Redis is marked as text but is not UTF-8") from None
        if raw[:1] == PICKLE_MARK:
            return self.unpickle(self.verified_pickle(key, raw))
        return self._int(raw)

    def pickle_start(self, raw: bytes) -> int | None:
        return _PICKLE_START if raw[:1] == PICKLE_MARK else None

    def verified_pickle(self, key: str, raw: bytes) -> bytes:
        """Return the pickle inside `raw` if it was signed for `key` with one of our keys."""
        signature, payload = raw[1:_PICKLE_START], raw[_PICKLE_START:]
        for secret in self._keys:
            if hmac.compare_digest(signature, _mac(secret, key, payload)):
                return payload
        raise CorruptData(
            "value in Redis has no valid signature for this key; refusing to unpickle it"
        )

    @staticmethod
    def unpickle(payload: bytes) -> object:
        """Return the value of a pickle we signed ourselves."""
        try:
            return pickle.loads(payload)
        except Exception as error:
            raise CorruptData(f"signed value could not be unpickled: {error}") from None

    @staticmethod
    def _int(raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise CorruptData(
                "value in Redis is neither an integer, text nor a signed pickle"
            ) from None


class JSONSerializer:
    """JSON, as django-redis's JSONSerializer (datetimes etc. come back as strings).

    Decoding JSON runs no code, so nothing is signed. Ints are JSON digits already, so
    Redis INCRBY works on them. `lossy`: a value may come back changed (a datetime as
    text, a tuple as a list), so L1 holds what comes back, not what was written.
    """

    lossy = True

    def __init__(self, signing_key: str | bytes = b"", fallback_keys: object = ()) -> None:
        """Take (and ignore) the keys every serializer is built with."""

    def dumps(self, key: str, value: object) -> bytes:
        try:
            return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
        except (TypeError, ValueError) as error:
            raise NotSerializable(
                f"value of type {type(value).__name__} is not JSON: {error}"
            ) from None

    def loads(self, key: str, raw: bytes) -> object:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CorruptData("value in Redis is not JSON") from None

    def pickle_start(self, raw: bytes) -> int | None:
        return None

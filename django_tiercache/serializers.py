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


class Serializer(Protocol):
    """Turns any value into the bytes Redis stores, and back."""

    def dumps(self, value: object) -> bytes:
        """Return the bytes for `value`; raise `NotSerializable`."""
        ...

    def loads(self, raw: bytes) -> object:
        """Return the value of `raw`; raise `CorruptData`."""
        ...


class SignedPickleSerializer:
    """Raw digits for ints; TEXT_MARK + UTF-8 for str; else MARK + keyed-BLAKE2b MAC + pickle."""

    def __init__(self, signing_key: str | bytes, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        secret = signing_key.encode() if isinstance(signing_key, str) else signing_key
        # Keyed BLAKE2b is a MAC in one pass (HMAC-SHA256 hashes twice: ~3x slower here);
        # its key is at most 64 bytes, so derive one of 32 from any secret.
        self._key = hashlib.sha256(b"django_tiercache.signing:" + secret).digest()
        self.protocol = protocol

    def dumps(self, value: object) -> bytes:
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
        return PICKLE_MARK + self._sign(payload) + payload

    def loads(self, raw: bytes) -> object:
        if raw and raw[0] == _TEXT:
            try:
                return raw[1:].decode()
            except UnicodeDecodeError:
                raise CorruptData("value in Redis is marked as text but is not UTF-8") from None
        if raw[:1] == PICKLE_MARK:
            return self.unpickle(self.verified_pickle(raw))
        return self._int(raw)

    def verified_pickle(self, raw: bytes) -> bytes:
        """Return the pickle inside `raw` if its signature is ours; raise `CorruptData`."""
        signature, payload = raw[1 : 1 + _DIGEST], raw[1 + _DIGEST :]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise CorruptData("value in Redis has no valid signature; refusing to unpickle it")
        return payload

    def _sign(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._key, digest_size=_DIGEST).digest()

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
    Redis INCRBY works on them.
    """

    def __init__(self, signing_key: str | bytes = b"") -> None:
        """Take (and ignore) the signing key every serializer is built with."""

    def dumps(self, value: object) -> bytes:
        try:
            return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
        except (TypeError, ValueError) as error:
            raise NotSerializable(
                f"value of type {type(value).__name__} is not JSON: {error}"
            ) from None

    def loads(self, raw: bytes) -> object:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CorruptData("value in Redis is not JSON") from None

"""Compression of large values (OPTIONS COMPRESSOR): zlib, gzip, lzma, lz4, zstd.

A compressed value is `MARK` + one byte naming the algorithm + the compressed bytes of
what the serializer made, so a reader needs no setting to decode it, and values written
before a change of COMPRESSOR stay readable. Values under the threshold are stored as the
serializer made them: bare integers in particular, so Redis INCRBY keeps working.
"""

from __future__ import annotations

import gzip
import importlib
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from django_tiercache.serializers import Serializer
from tiercache.errors import CorruptData

__all__ = ["MARK", "Algorithm", "CompressingSerializer", "algorithm"]

#: First byte of a compressed value; no serializer of ours starts its output with it.
MARK = b"~"
#: Never compress below this many bytes: an integer (at most 20) must stay bare digits.
_FLOOR = 32
#: Most bytes a value may expand to: a planted "compression bomb" is refused, not inflated.
_MAX_EXPANDED = 512 * 1024 * 1024


@dataclass(frozen=True)
class Algorithm:
    """One compression algorithm: its flag byte and its two functions."""

    name: str
    flag: bytes
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _bounded_zlib(wbits: int) -> Callable[[bytes], bytes]:
    def decompress(data: bytes) -> bytes:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(data, _MAX_EXPANDED)
        if not inflater.eof:
            raise ValueError("expands past the limit, or is truncated")
        return out

    return decompress


def _bounded_lzma(data: bytes) -> bytes:
    inflater = lzma.LZMADecompressor()
    out = inflater.decompress(data, _MAX_EXPANDED)
    if not inflater.eof:
        raise ValueError("expands past the limit, or is truncated")
    return out


def _lz4() -> Algorithm:
    frame = importlib.import_module("lz4.frame")
    return Algorithm("lz4", b"4", frame.compress, frame.decompress)


def _zstd() -> Algorithm:
    pyzstd = importlib.import_module("pyzstd")
    return Algorithm("zstd", b"s", pyzstd.compress, pyzstd.decompress)


_BUILDERS: dict[str, Callable[[], Algorithm]] = {
    "zlib": lambda: Algorithm("zlib", b"z", zlib.compress, _bounded_zlib(zlib.MAX_WBITS)),
    "gzip": lambda: Algorithm("gzip", b"g", gzip.compress, _bounded_zlib(16 + zlib.MAX_WBITS)),
    "lzma": lambda: Algorithm("lzma", b"x", lzma.compress, _bounded_lzma),
    "lz4": _lz4,
    "zstd": _zstd,
}
_FLAGS = {"z": "zlib", "g": "gzip", "x": "lzma", "4": "lz4", "s": "zstd"}


def algorithm(name: str) -> Algorithm:
    """Return the algorithm called `name`; raise ImportError if its package is missing."""
    return _BUILDERS[name]()


class CompressingSerializer:
    """Wraps a serializer: compresses what it makes above `min_bytes` with `name`.

    With `name` None it compresses nothing but still reads compressed values.
    """

    def __init__(self, inner: Serializer, name: str | None, min_bytes: int) -> None:
        self.inner = inner
        self.lossy = bool(getattr(inner, "lossy", False))
        self.algorithm = algorithm(name) if name else None
        self.min_bytes = max(min_bytes, _FLOOR)
        self._readers: dict[bytes, Algorithm] = {}
        if self.algorithm is not None:
            self._readers[self.algorithm.flag] = self.algorithm

    def dumps(self, key: str, value: object) -> bytes:
        raw = self.inner.dumps(key, value)
        if self.algorithm is None or len(raw) < self.min_bytes:
            return raw
        packed = self.algorithm.compress(raw)
        if len(packed) + 2 >= len(raw):
            return raw  # incompressible: not worth a decompression on every read
        return MARK + self.algorithm.flag + packed

    def loads(self, key: str, raw: bytes) -> object:
        if raw[:1] != MARK:
            return self.inner.loads(key, raw)
        flag = raw[1:2]
        try:
            reader = self._readers.get(flag) or self._reader(flag)
            return self.inner.loads(key, reader.decompress(raw[2:]))
        except CorruptData:
            raise
        except Exception as error:  # each library raises its own kinds
            raise CorruptData(f"compressed value in Redis cannot be read: {error}") from None

    def pickle_start(self, raw: bytes) -> int | None:
        return None if raw[:1] == MARK else self.inner.pickle_start(raw)

    def _reader(self, flag: bytes) -> Algorithm:
        name = _FLAGS.get(flag.decode("latin-1"))
        if name is None:
            raise CorruptData(f"compressed value names an unknown algorithm {flag!r}")
        reader = self._readers[flag] = algorithm(name)
        return reader

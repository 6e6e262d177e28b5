"""An in-memory L2 for unit tests of the tier policy: it answers the requests flows yield.

It interprets the scripts of `tiercache.commands` and the plain commands the policy
sends (tracked reads answer as tracked), on a dict with millisecond expiry read from a fake clock. It is a
fake of the port, not of redis-py: the Redis adapter is tested on a real server.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from tiercache import CacheError, CacheUnavailable, NotAnInteger, commands, envelope
from tiercache.commands import Command, Fill, Request

SCRIPT_NAMES = {
    commands.EXPIRE.sha: "EXPIRE",
    commands.INCREMENT_EXISTING.sha: "INCREMENT_EXISTING",
}


@dataclass
class FakeL2:
    """A dict of key -> (bytes, expiry in ms or None); records every request."""

    clock: Callable[[], float]
    data: dict[str, tuple[bytes, float | None]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    published: list[tuple[str, str]] = field(default_factory=list)
    #: When set, every request raises this error instead of running.
    failure: CacheError | None = None
    #: Called with each request before it runs (to interleave other work).
    before: Callable[[Request], None] | None = None

    def __call__(self, request: Request) -> object:
        self.requests.append(request)
        if self.before is not None:
            self.before(request)
        if self.failure is not None:
            raise self.failure
        if isinstance(request, Fill):
            if request.write is not None:
                return (self._command(request.write), self._command(request.command)), True
            return self._command(request.command), True
        if isinstance(request, list):
            return [self._command(command) for command in request]
        return self._command(request)

    # -- direct access for tests ------------------------------------------------------

    def plant(
        self, key: str, value: bytes | str, ttl: float | None = None, *, bare: bool = False
    ) -> None:
        """Store `value` as our writers do (in an envelope), or `bare` as another tool would."""
        raw = value.encode() if isinstance(value, str) else value
        expires = None if ttl is None else self._now_ms() + ttl * 1000
        if not bare:
            raw = envelope.wrap(raw, envelope.stamp(None if expires is None else int(expires)))
        self.data[key] = (raw, expires)

    def value(self, key: str) -> bytes | None:
        found = self._live(key)
        return None if found is None else found[0]

    def payload(self, key: str) -> bytes | None:
        """Return the codec bytes of `key`, out of their envelope."""
        stored = self.value(key)
        return None if stored is None else envelope.unwrap(stored, self._now_ms())[0]

    def fail_with(self, error: CacheError | None = None) -> None:
        """Make every later request raise `error` (by default, `CacheUnavailable`)."""
        self.failure = error or CacheUnavailable("fake L2 is down")

    # -- the interpreter --------------------------------------------------------------

    def _now_ms(self) -> float:
        return self.clock() * 1000

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        found = self.data.get(key)
        if found is not None and found[1] is not None and found[1] <= self._now_ms():
            del self.data[key]
            return None
        return found

    def _pttl(self, key: str) -> int:
        found = self._live(key)
        if found is None:
            return -2
        if found[1] is None:
            return -1
        return int(found[1] - self._now_ms())

    def _set(self, key: str, raw: bytes, px: int) -> None:
        self.data[key] = (raw, None if px == 0 else self._now_ms() + px)

    def _increment(self, key: str, amount: int) -> int:
        raw, expires = self._live(key) or (b"0", None)
        try:
            total = int(raw) + amount
        except ValueError:
            raise NotAnInteger("ERR value is not an integer or out of range") from None
        self.data[key] = (str(total).encode(), expires)
        return total

    def _command(self, command: Command) -> object:
        name = command[0]
        if name == "EVALSHA":
            count = int(command[2])
            keys = [str(key) for key in command[3 : 3 + count]]
            return self._script(SCRIPT_NAMES[str(command[1])], keys, command[3 + count :])
        if name == "GET":
            return self.value(str(command[1]))
        if name == "MGET":
            return [self.value(str(key)) for key in command[1:]]
        if name == "EXISTS":
            return int(self._live(str(command[1])) is not None)
        if name == "PTTL":
            return self._pttl(str(command[1]))
        if name == "PING":
            return True
        if name == "SCAN":
            pattern = str(command[command.index("MATCH") + 1])
            return [0, [k.encode() for k in list(self.data) if fnmatch.fnmatchcase(k, pattern)]]
        if name == "SET":
            key, raw = str(command[1]), command[2]
            options = [str(arg) for arg in command[3:]]
            if "NX" in options and self._live(key) is not None:
                return None
            if "XX" in options and self._live(key) is None:
                return None
            px = int(options[options.index("PX") + 1]) if "PX" in options else 0
            self._set(key, raw if isinstance(raw, bytes) else str(raw).encode(), px)
            return True
        if name == "MSET":
            for key, raw in zip(command[1::2], command[2::2], strict=True):
                self._set(str(key), raw if isinstance(raw, bytes) else str(raw).encode(), 0)
            return True
        if name == "INCRBY":
            return self._increment(str(command[1]), int(command[2]))
        if name == "PUBLISH":
            self.published.append((str(command[1]), str(command[2])))
            return 1
        if name == "UNLINK":
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in command[1:]]
            return sum(self.data.pop(key, None) is not None for key in keys)
        raise AssertionError(f"the fake L2 does not know {command!r}")

    def _script(self, name: str, keys: list[str], args: tuple[object, ...]) -> object:
        if name == "EXPIRE":
            found = self._live(keys[0])
            if found is None:
                return 0
            millis, raw = int(str(args[0])), found[0]
            if raw[:1] == b"@":  # rewrite the envelope's expiry, as the script does
                digits = args[1] if isinstance(args[1], bytes) else str(args[1]).encode()
                raw = envelope.MARK + digits + raw[envelope.HEADER_SIZE :]
            self.data[keys[0]] = (raw, None if millis == -1 else self._now_ms() + millis)
            return 1
        if name == "INCREMENT_EXISTING":
            if self._live(keys[0]) is None:
                return None
            return self._increment(keys[0], int(str(args[0])))
        raise AssertionError(name)

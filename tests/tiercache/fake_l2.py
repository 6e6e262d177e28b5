"""An in-memory L2 for unit tests of the tier policy: it answers the requests flows yield.

It interprets the scripts of `tiercache.commands` and the few plain commands the
policy sends, on a dict with millisecond expiry read from a fake clock. It is a
fake of the port, not of redis-py: the Redis adapter is tested on a real server.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from tiercache import CacheError, CacheUnavailable, NotAnInteger, commands, envelope
from tiercache.commands import Command, Request

SCRIPT_NAMES = {
    commands.PTTLS.sha: "PTTLS",
    commands.SET.sha: "SET",
    commands.SET_MANY.sha: "SET_MANY",
    commands.DELETE.sha: "DELETE",
    commands.PUBLISH_OTHERS.sha: "PUBLISH_OTHERS",
    commands.EXPIRE.sha: "EXPIRE",
    commands.INCREMENT.sha: "INCREMENT",
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

    def _publish(self, args: tuple[object, ...]) -> None:
        channel, message = str(args[-2]), str(args[-1])
        if channel:
            self.published.append((channel, message))

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
        if name == "UNLINK":
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in command[1:]]
            return sum(self.data.pop(key, None) is not None for key in keys)
        raise AssertionError(f"the fake L2 does not know {command!r}")

    def _script(self, name: str, keys: list[str], args: tuple[object, ...]) -> object:
        if name == "PUBLISH_OTHERS":
            self._publish(args)
            return 1
        if name == "PTTLS":
            return [self._pttl(key) for key in keys]
        if name == "SET":
            raw, px, only_if_absent = args[0], int(str(args[1])), str(args[2]) == "1"
            if only_if_absent and self._live(keys[0]) is not None:
                return 0
            self._set(keys[0], raw if isinstance(raw, bytes) else str(raw).encode(), px)
            self._publish(args)
            return 1
        if name == "SET_MANY":
            px = int(str(args[len(keys)]))
            for key, raw in zip(keys, args, strict=False):
                self._set(key, raw if isinstance(raw, bytes) else str(raw).encode(), px)
            self._publish(args)
            return len(keys)
        if name == "DELETE":
            removed = sum(
                self._live(key) is not None and self.data.pop(key) is not None for key in keys
            )
            self._publish(args)
            return removed
        if name == "EXPIRE":
            found = self._live(keys[0])
            if found is None:
                return 0
            millis, raw = int(str(args[0])), found[0]
            if raw[:1] == b"@":  # rewrite the envelope's expiry, as the script does
                digits = args[1] if isinstance(args[1], bytes) else str(args[1]).encode()
                raw = envelope.MARK + digits + raw[envelope.HEADER_SIZE :]
            self.data[keys[0]] = (raw, None if millis == -1 else self._now_ms() + millis)
            self._publish(args)
            return 1
        if name == "INCREMENT":
            amount, must_exist = int(str(args[0])), str(args[1]) == "1"
            found = self._live(keys[0])
            if must_exist and found is None:
                return None
            raw, expires = found if found is not None else (b"0", None)
            try:
                total = int(raw) + amount
            except ValueError:
                raise NotAnInteger("ERR value is not an integer or out of range") from None
            self.data[keys[0]] = (str(total).encode(), expires)
            self._publish(args)
            return total
        raise AssertionError(name)

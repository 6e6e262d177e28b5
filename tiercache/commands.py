"""The Redis commands the tier policy yields: plain data, no I/O, no redis import.

A request is one command (a tuple of arguments), a pipeline (a list of them), or a
`Fill`: a read whose answer will fill L1, which the tier sends tracked (see
`tiercache.tracking`). Writes are plain commands: Redis itself tells the processes
that hold a key when it changes. The few scripts left make two steps atomic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, cast

__all__ = [
    "EXPIRE",
    "INCREMENT_EXISTING",
    "READS",
    "RELEASE_LOCK",
    "SCRIPTS",
    "Arg",
    "Command",
    "Fill",
    "Request",
    "Script",
    "evalsha",
    "operation_of",
]

Arg = str | bytes | int | float
Command = tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Fill:
    """A read (GET or MGET) whose answer fills L1, after an optional write of its key.

    The tier answers `(reply, tracked)`: `tracked` is False when the request went through
    the ordinary pool (the key's fill connection was busy, or the process is deaf to
    invalidations), and then L1 must not keep what it read. A batch read over several
    nodes (a cluster) may answer the frozenset of the keys read tracked instead. With
    `write`, the reply is
    `(write's reply, read's reply)` when tracked, the write's reply alone when not (the
    read is then not sent).
    """

    command: Command
    write: Command | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """Return the keys the read names (the policy builds reads of str keys)."""
        return cast("tuple[str, ...]", self.command[1:])


Request = Command | list[Command] | Fill

#: Commands that change nothing: the only ones a tier may send again after a lost reply.
READS: Final = frozenset({"GET", "MGET", "PTTL", "EXISTS", "PING", "SCAN", "INFO", "PUBSUB"})


class Script:
    """A Lua script called by its SHA1; the tier falls back to EVAL on NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.sha[:8]})"


#: Every script by SHA1, so a tier can resend the source after a server restart.
SCRIPTS: dict[str, Script] = {}


def _script(source: str) -> Script:
    script = Script(source)
    SCRIPTS[script.sha] = script
    return script


def evalsha(script: Script, keys: list[str], *args: Arg) -> Command:
    """Return the command that runs `script` over `keys` with `args`."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


#: KEYS[1], ARGV: ms ('-1': persist), new expiry digits -> 1/0
#: The value's envelope (see `tiercache.envelope`) is rewritten in place to match.
EXPIRE: Final = _script(
    """
local done
if ARGV[1] == '-1' then done = redis.call('PERSIST', KEYS[1])
else done = redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if redis.pcall('GETRANGE', KEYS[1], 0, 0) == '@' then redis.call('SETRANGE', KEYS[1], 1, ARGV[2]) end
return done
"""
)

#: KEYS[1], ARGV: amount -> new value, or false when the key does not exist
INCREMENT_EXISTING: Final = _script(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "return redis.call('INCRBY', KEYS[1], ARGV[1])"
)

#: KEYS[1] (a lock), ARGV: the owner's token -> 1 if released, 0 if not ours (expired)
RELEASE_LOCK: Final = _script(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\nreturn 0"
)


def operation_of(request: Request) -> str:
    """Return the label of a request for metrics: its command or script name, or "pipeline"."""
    if isinstance(request, list):
        return "pipeline"
    if isinstance(request, Fill):  # a tracked read, after its write if any
        request = request.write or request.command
    name = str(request[0]).lower()
    if name == "evalsha":
        return _SCRIPT_NAMES.get(str(request[1]), "script")
    return name


#: Script name by SHA1, for `operation_of` ("expire", "increment", ...).
_SCRIPT_NAMES: dict[str, str] = {
    script.sha: name.lower()
    for name, script in list(globals().items())
    if isinstance(script, Script)
}

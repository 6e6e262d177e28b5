"""The Redis commands the tier policy yields: plain data, no I/O, no redis import.

A request is one command (a tuple of arguments) or a pipeline (a list of them).
Writes that must tell other processes run as one Lua script, so the write and its
invalidation message travel in one round trip and cannot be separated.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = [
    "DELETE",
    "EXPIRE",
    "INCREMENT",
    "PTTLS",
    "PUBLISH_OTHERS",
    "READS",
    "RELEASE_LOCK",
    "SCRIPTS",
    "SET",
    "SET_MANY",
    "Arg",
    "Command",
    "Request",
    "Script",
    "evalsha",
]

Arg = str | bytes | int | float
Command = tuple[Arg, ...]
Request = Command | list[Command]

#: Commands that change nothing: the only ones a tier may send again after a lost reply.
READS: Final = frozenset({"GET", "MGET", "PTTL", "EXISTS", "PING", "SCAN", "INFO", "PUBSUB"})


class Script:
    """A Lua script called by its SHA1; the driver falls back to EVAL on NOSCRIPT."""

    def __init__(self, source: str, *, per_key_args: bool = False) -> None:
        self.source = source
        #: ARGV starts with one argument per key (so a cluster can split it by slot).
        self.per_key_args = per_key_args
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.sha[:8]})"


#: Every script by SHA1, so a driver can resend the source after a server restart.
SCRIPTS: dict[str, Script] = {}


def _script(source: str, *, per_key_args: bool = False) -> Script:
    script = Script(source, per_key_args=per_key_args)
    SCRIPTS[script.sha] = script
    return script


def evalsha(script: Script, keys: list[str], *args: Arg) -> Command:
    """Return the command that runs `script` over `keys` with `args`."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


# Publishing is the last two ARGV of every write script: the writer's own channel ('' for
# none) and the message. Each process listens on `<base>:<instance id>`; a write tells every
# channel of the base but the writer's own, so a process is never woken by its own writes
# (its other L1s were told synchronously). On a busy host that wake-up, and the GIL
# hand-over it forces, cost more than the write itself.
_PUBLISH = """
local own = ARGV[#ARGV - 1]
if own ~= '' then
  local base = string.match(own, '^(.*):[^:]*$')
  for _, channel in ipairs(redis.call('PUBSUB', 'CHANNELS', base .. ':*')) do
    if channel ~= own then redis.call('PUBLISH', channel, ARGV[#ARGV]) end
  end
end
"""

#: ARGV: own channel, message -> 1 (tells the other processes; see _PUBLISH)
PUBLISH_OTHERS: Final = _script(_PUBLISH + "\nreturn 1")

#: KEYS -> {remaining milliseconds per key (-1: none, -2: no key)}, for bare values
PTTLS: Final = _script(
    "local out = {}\nfor i, key in ipairs(KEYS) do out[i] = redis.call('PTTL', key) end\nreturn out"
)

#: KEYS[1], ARGV: value, px ('0': none), only_if_absent ('1'/'0'), channel, message -> 1/0
SET: Final = _script(
    """
local args = {'SET', KEYS[1], ARGV[1]}
if ARGV[2] ~= '0' then table.insert(args, 'PX'); table.insert(args, ARGV[2]) end
if ARGV[3] == '1' then table.insert(args, 'NX') end
local stored = redis.call(unpack(args))
if not stored then return 0 end
"""
    + _PUBLISH
    + "\nreturn 1"
)

#: KEYS, ARGV: value per key, px ('0': none), channel, message -> number of keys
SET_MANY: Final = _script(
    """
local px = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  if px ~= '0' then redis.call('SET', key, ARGV[i], 'PX', px)
  else redis.call('SET', key, ARGV[i]) end
end
"""
    + _PUBLISH
    + "\nreturn #KEYS",
    per_key_args=True,
)

#: KEYS, ARGV: channel, message -> number of keys removed
DELETE: Final = _script("local n = redis.call('UNLINK', unpack(KEYS))\n" + _PUBLISH + "\nreturn n")

#: KEYS[1], ARGV: ms ('-1': persist), new expiry digits, channel, message -> 1/0
#: The value's envelope (see `tiercache.envelope`) is rewritten in place to match.
EXPIRE: Final = _script(
    """
local done
if ARGV[1] == '-1' then done = redis.call('PERSIST', KEYS[1])
else done = redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if redis.pcall('GETRANGE', KEYS[1], 0, 0) == '@' then redis.call('SETRANGE', KEYS[1], 1, ARGV[2]) end
"""
    + _PUBLISH
    + "\nreturn done"
)

#: KEYS[1], ARGV: amount, must_exist ('1'/'0'), channel, message -> new value or false
INCREMENT: Final = _script(
    """
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return false end
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
"""
    + _PUBLISH
    + "\nreturn n"
)

#: KEYS[1] (a lock), ARGV: the owner's token -> 1 if released, 0 if not ours (expired)
RELEASE_LOCK: Final = _script(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\nreturn 0"
)

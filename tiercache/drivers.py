"""The two loops that drive a flow: one sync, one async. Nothing else differs.

A flow yields requests: Redis commands, which `execute` runs, and any other effect
(get_or_set's loader call, its single-flight wait, a pause) that a handler in
`effects` answers, chosen by the request's type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from types import GeneratorType, MappingProxyType
from typing import Any, TypeVar, cast

from returns.result import Result

from tiercache.commands import Request
from tiercache.errors import CacheError

__all__ = [
    "AsyncEffects",
    "AsyncExecutor",
    "Effects",
    "SyncExecutor",
    "drive",
    "drive_async",
]

T = TypeVar("T")
SyncExecutor = Callable[[Request], object]
AsyncExecutor = Callable[[Request], Awaitable[object]]
#: Handlers of the effects that are not Redis commands, by the effect's type.
Effects = Mapping[type, Callable[[Any], object]]
AsyncEffects = Mapping[type, Callable[[Any], Awaitable[object]]]
#: A flow of any effects, or its result when it needed none.
Driven = Generator[Any, object, Result[T, CacheError]] | Result[T, CacheError]

_NO_EFFECTS: Mapping[type, Any] = MappingProxyType({})


def drive(
    flow: Driven[T], execute: SyncExecutor | None, effects: Effects = _NO_EFFECTS
) -> Result[T, CacheError]:
    """Run `flow`, answering each request with its effect handler or `execute`."""
    if not isinstance(flow, GeneratorType):  # an L1 hit: answered without I/O
        return cast("Result[T, CacheError]", flow)
    try:
        request = next(flow)
        while True:
            handle = effects.get(type(request), execute)
            assert handle is not None, "a flow without L2 yielded a request"
            try:
                reply = handle(request)
            except CacheError as error:
                request = flow.throw(error)
            else:
                request = flow.send(reply)
    except StopIteration as stop:
        result: Result[T, CacheError] = stop.value
        return result


async def drive_async(
    flow: Driven[T], execute: AsyncExecutor | None, effects: AsyncEffects = _NO_EFFECTS
) -> Result[T, CacheError]:
    """Run `flow`, answering each request by awaiting its effect handler or `execute`."""
    if not isinstance(flow, GeneratorType):
        return cast("Result[T, CacheError]", flow)
    try:
        request = next(flow)
        while True:
            handle = effects.get(type(request), execute)
            assert handle is not None, "a flow without L2 yielded a request"
            try:
                reply = await handle(request)
            except CacheError as error:
                request = flow.throw(error)
            else:
                request = flow.send(reply)
    except StopIteration as stop:
        result: Result[T, CacheError] = stop.value
        return result

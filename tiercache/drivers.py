"""The two loops that drive a policy flow: one sync, one async. Nothing else differs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from returns.result import Result

from tiercache.commands import Request
from tiercache.errors import CacheError
from tiercache.policy import Flow

__all__ = ["AsyncExecutor", "SyncExecutor", "drive", "drive_async"]

T = TypeVar("T")
SyncExecutor = Callable[[Request], object]
AsyncExecutor = Callable[[Request], Awaitable[object]]


def drive(flow: Flow[T], execute: SyncExecutor | None) -> Result[T, CacheError]:
    """Run `flow`, answering each request it yields with `execute`."""
    try:
        request = next(flow)
        while True:
            assert execute is not None, "a flow without L2 yielded a request"
            try:
                reply = execute(request)
            except CacheError as error:
                request = flow.throw(error)
            else:
                request = flow.send(reply)
    except StopIteration as stop:
        result: Result[T, CacheError] = stop.value
        return result


async def drive_async(flow: Flow[T], execute: AsyncExecutor | None) -> Result[T, CacheError]:
    """Run `flow`, answering each request it yields by awaiting `execute`."""
    try:
        request = next(flow)
        while True:
            assert execute is not None, "a flow without L2 yielded a request"
            try:
                reply = await execute(request)
            except CacheError as error:
                request = flow.throw(error)
            else:
                request = flow.send(reply)
    except StopIteration as stop:
        result: Result[T, CacheError] = stop.value
        return result

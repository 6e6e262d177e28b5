"""Another process that writes keys, so this one's L1 has never seen them."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Self

from benchmarks.subjects import VALUE_STR, Setup, Subject

__all__ = ["Writer"]

_CHUNK = 500


class Writer:
    """A helper process with its own instance of every subject, writing on request."""

    def __init__(self, setup: Setup) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(setup, child), name="benchmarks-writer", daemon=True
        )
        self._process.start()
        child.close()
        self._conn.recv()  # ready

    def write(self, subject: Subject, keys: list[str]) -> None:
        """Store VALUE_STR at every key through `subject` in the helper; wait until done."""
        self._conn.send((subject, keys))
        reply = self._conn.recv()
        if isinstance(reply, str):
            raise RuntimeError(f"the writer process failed: {reply}")

    def close(self) -> None:
        """Stop the helper process."""
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(10)
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _serve(setup: Setup, conn: Connection) -> None:
    setup.configure()
    conn.send("ready")
    while (request := conn.recv()) is not None:
        subject, keys = request
        try:
            set_many = setup.calls(subject).set_many
            for start in range(0, len(keys), _CHUNK):
                set_many(dict.fromkeys(keys[start : start + _CHUNK], VALUE_STR))
        except Exception as error:  # reported to the parent, which stops the run
            conn.send(f"{type(error).__name__}: {error}")
        else:
            conn.send(len(keys))

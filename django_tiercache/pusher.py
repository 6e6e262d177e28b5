"""One daemon thread per process that pushes every alias's metrics into its store.

A push is network I/O with the cache's timeouts: run on a request's path it would
delay that request whenever Redis is slow or stopped. Here it only delays the next
push. The thread lives in tiercache's process registry, so `registry.reset()` stops it
and a forked child makes its own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref

from django_tiercache.metrics import AliasMetrics
from tiercache import registry

__all__ = ["Pusher", "pusher"]

logger = logging.getLogger(__name__)

#: Longest the thread sleeps between two looks at which alias is due.
_TICK = 1.0


class Pusher:
    """Pushes each watched alias's metrics once its interval has passed."""

    def __init__(self) -> None:
        self._watched: weakref.WeakSet[AliasMetrics] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The alias being pushed right now, if any (tests and the admin read it).
        self.busy_with: AliasMetrics | None = None

    def watch(self, metrics: AliasMetrics) -> None:
        """Push `metrics` from now on; start the thread if it is not running."""
        with self._lock:
            self._watched.add(metrics)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="django-tiercache-metrics", daemon=True
                )
                self._thread.start()

    def push_all(self) -> None:
        """Push every watched alias now (the thread's work, also run at exit)."""
        for metrics in list(self._watched):
            self._push(metrics)

    def stop(self) -> None:
        """Stop the thread after its current push."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        """Return whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(_TICK):
            for metrics in list(self._watched):
                if metrics.push_due and not self._stop.is_set():
                    self._push(metrics)

    def _push(self, metrics: AliasMetrics) -> None:
        self.busy_with = metrics
        try:
            metrics.push()
        except Exception:  # a bug in a push must not kill the thread for every alias
            logger.exception("metrics push of %r failed", metrics)
        finally:
            self.busy_with = None


def pusher() -> Pusher:
    """Return this process's pusher."""
    return registry.shared(("django_tiercache", "pusher"), Pusher, close=Pusher.stop)


@atexit.register
def _push_at_exit() -> None:
    with contextlib.suppress(Exception):  # the process is going away regardless
        pusher().push_all()

"""Find a Redis for the demo, or run a private, throwaway `redis-server`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from urllib.parse import urlsplit

__all__ = ["PrivateRedis", "answers_ping", "die_with_parent", "free_port"]


def answers_ping(url: str, timeout: float = 0.5) -> bool:
    """Return whether a Redis answers PING at `url` (redis:// URLs only)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout
        ) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> list[str]:
    """Return a command prefix so that Linux kills the child when this process dies."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


class PrivateRedis:
    """A `redis-server` on a free loopback port, with nothing persisted; `stop()` ends it."""

    def __init__(self, executable: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="tiercache-demo-redis-")
        command = [
            *die_with_parent(),
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 5.0
        while not answers_ping(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    @classmethod
    def start_if_installed(cls) -> PrivateRedis | None:
        """Start one if `redis-server` is on PATH, else return None."""
        executable = shutil.which("redis-server")
        return cls(executable) if executable else None

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._dir.cleanup()

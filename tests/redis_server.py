"""Run a private, throwaway ``redis-server`` process for tests.

Every server listens on its own free loopback port, so tests never touch a Redis
at 127.0.0.1:6379. Nothing is persisted: after ``kill()`` + ``restart()`` the data is gone.
"""

from __future__ import annotations

import atexit
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["RedisServer", "RedisServerError", "port_is_free"]

_INSTALL_HINT = (
    "redis-server is not on PATH. Run `bash tests/run.sh` (it installs everything) "
    "or `apt-get install -y redis-server`."
)
_HOST = "127.0.0.1"


class RedisServerError(RuntimeError):
    """The redis-server process could not be started."""


class RedisServer:
    """One redis-server process on a loopback port, without persistence.

    Use it as a context manager, or call ``start()`` and ``close()``. Extra
    arguments go to redis-server verbatim, e.g. ``RedisServer("--requirepass", "s3cret")``.
    ``url`` never carries a password. ``config_file`` goes first on the command line
    (a Sentinel needs one it can rewrite); ``pick_port`` chooses the first port
    (a cluster node also needs port + 10000 free for its bus).
    """

    def __init__(
        self,
        *extra_args: str,
        port: int | None = None,
        executable: str = "redis-server",
        startup_timeout: float = 5.0,
        config_file: Path | None = None,
        pick_port: Callable[[], int] | None = None,
    ) -> None:
        self._extra_args = extra_args
        self._port = port
        self._config_file = config_file
        self._pick_port = pick_port or _free_port
        self._executable = executable
        self._startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def port(self) -> int:
        """Return the port, fixed by the first start and kept by restarts."""
        if self._port is None:
            raise RuntimeError("RedisServer has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Return ``redis://127.0.0.1:PORT/0``."""
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """Return the PID of the current (or last) process."""
        if self._process is None:
            raise RuntimeError("RedisServer has not been started")
        return self._process.pid

    @property
    def log_path(self) -> Path:
        """Return the file that receives the server's stdout and stderr."""
        return self._workdir() / "redis-server.log"

    def is_running(self) -> bool:
        """Return whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it answers PING.

        The first start picks a free port; later starts reuse it.
        """
        if self.is_running():
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        executable = shutil.which(self._executable)
        if executable is None:
            raise RedisServerError(_INSTALL_HINT)
        _open_servers.add(self)
        fixed_port = self._port is not None
        # A fixed port may still be held for a moment after a kill; a fresh
        # port can be taken by someone else between probing and binding.
        for _attempt in range(20 if fixed_port else 3):
            port = self._port if self._port is not None else self._pick_port()
            if port_is_free(port) and self._spawn(executable, port):
                self._port = port
                return self
            time.sleep(0.1 if fixed_port else 0)
        raise RedisServerError(
            f"redis-server could not bind a loopback port; log: {self.log_path}\n{self._log_tail()}"
        )

    def restart(self) -> Self:
        """Stop the server if it runs, then start it again on the same port."""
        self.stop()
        return self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send SIGTERM and wait; escalate to SIGKILL after ``timeout`` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Send SIGKILL and wait, so the port refuses connections immediately."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def close(self) -> None:
        """Stop the server and delete its temporary directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        _open_servers.discard(self)

    def __enter__(self) -> Self:
        return self if self.is_running() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer port={self._port} {state}>"

    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="tiercache-redis-"))
        return self._dir

    def _spawn(self, executable: str, port: int) -> bool:
        """Start a process on ``port``; return False if the port was taken."""
        command = [
            *_die_with_parent_prefix(),
            executable,
            *([str(self._config_file)] if self._config_file is not None else []),
            "--port", str(port),
            "--bind", _HOST,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._workdir()),
            *self._extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {time.strftime('%H:%M:%S')} {shlex.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not kill it mid-teardown
            )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                if "Address already in use" in self._log_tail():
                    return False
                raise RedisServerError(
                    f"redis-server exited with code {self._process.returncode}; "
                    f"log: {self.log_path}\n{self._log_tail()}"
                )
            if _answers_ping(port) and self._process.poll() is None:
                return True
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"redis-server did not answer PING on port {port} within "
            f"{self._startup_timeout} s; log: {self.log_path}\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        """Return the last lines the latest process wrote."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Return whether a loopback listener could bind ``port`` now."""
    # SO_REUSEADDR as redis-server itself sets it: TIME_WAIT leftovers don't count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # -NOAUTH still proves the server is up when started with --requirepass.
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _die_with_parent_prefix() -> list[str]:
    """Return a command prefix so Linux kills redis-server if this process dies.

    This covers exits that skip ``atexit`` (SIGKILL, ``os._exit`` from a
    timeout). The kernel tracks the parent *thread*, so it is only used from
    the main thread, which outlives every test. ``setpriv`` is in util-linux.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


_open_servers: set[RedisServer] = set()


@atexit.register
def _close_leftovers() -> None:
    for server in list(_open_servers):
        server.kill()
        server.close()

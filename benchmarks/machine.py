"""What the numbers were measured on, for the report and the result's file name."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["Machine", "describe"]

_LIBRARIES = ("Django", "django-redis", "redis", "hiredis", "cachetools", "tiercache")


@dataclass(frozen=True)
class Machine:
    """The facts a reader needs to weigh the numbers."""

    cpu: str
    cpus: int
    usable_cpus: int
    virtual: bool
    container: bool
    memory_gib: float
    system: str
    python: str
    redis_server: str
    libraries: dict[str, str]
    commit: str

    @property
    def kind(self) -> str:
        """Return a short name for the kind of host, e.g. `vm-2cpu`."""
        return f"{'vm' if self.virtual else 'metal'}-{self.usable_cpus}cpu"

    def lines(self) -> list[str]:
        """Return the description as Markdown list items."""
        where = ("VM" if self.virtual else "bare metal") + (
            ", in a container" if self.container else ""
        )
        libraries = ", ".join(f"{name} {version}" for name, version in self.libraries.items())
        return [
            f"- CPU: {self.cpu}; {self.cpus} logical CPUs, {self.usable_cpus} usable ({where})",
            f"- Memory: {self.memory_gib:.0f} GiB; {self.system}",
            f"- Python {self.python}; redis-server {self.redis_server} (private, on loopback, no persistence)",
            f"- {libraries}",
            f"- tiercache commit {self.commit}",
        ]


def describe(redis_server: str) -> Machine:
    """Describe this machine; `redis_server` is the version the server reported."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return Machine(
        cpu=model,
        cpus=os.cpu_count() or 0,
        usable_cpus=len(os.sched_getaffinity(0)),
        virtual=" hypervisor" in cpuinfo,
        container=Path("/.dockerenv").exists() or "docker" in _read("/proc/1/cgroup"),
        memory_gib=_memory_kib() / 2**20,
        system=f"{_os_name()}, Linux {platform.release()}",
        python=f"{platform.python_implementation()} {platform.python_version()}",
        redis_server=redis_server,
        libraries={name: _version(name) for name in _LIBRARIES},
        commit=_commit(),
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _memory_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return platform.system()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head

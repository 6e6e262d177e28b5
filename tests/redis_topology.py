"""Run a real Redis Cluster or a Sentinel set of ``redis-server`` processes for tests.

``RedisClusterServers``: 3 primaries and 3 replicas (one each) on free loopback ports
below 55536, whose cluster bus (port + 10000) is free too. ``RedisSentinelServers``: a
master, a replica and 3 sentinels watching the service ``mymaster``. Both wait until the
topology is ready, offer the failovers tests need (``CLUSTER FAILOVER``, SIGKILL of a
primary or of the Sentinel master), and ``heal()`` back to a healthy topology: dead
processes restarted on their ports, every replica linked. Processes stop by PID.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redis_server import RedisServer, RedisServerError, port_is_free

__all__ = [
    "ClusterNode",
    "RedisClusterServers",
    "RedisSentinelServers",
    "TopologyNotReady",
    "wait_until",
]

_HOST = "127.0.0.1"
_SLOTS = 16384
#: Ports whose bus port (port + 10000) also stays below the kernel's ephemeral range
#: (32768+), so an outgoing connection can never be holding a bus port.
_CLUSTER_PORTS = range(10_000, 22_000)
#: A replica syncs at once (Redis 7 waits 5 s for more replicas by default).
_REPLICATION_ARGS = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
#: Quick failovers, and a replica that was briefly cut off may still be promoted.
_CLUSTER_ARGS = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "1000",
    "--cluster-replica-validity-factor", "0",
    # The other primaries keep serving while a dead one's replica takes over.
    "--cluster-require-full-coverage", "no",
    *_REPLICATION_ARGS,
)  # fmt: skip
_READY_TIMEOUT = 30.0


class TopologyNotReady(RuntimeError):
    """The servers did not reach the expected state in time."""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = _READY_TIMEOUT) -> float:
    """Poll `condition` until it holds; return the seconds waited or raise naming `what`."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass  # a node still starting or failing over: ask again
        if time.monotonic() - start > timeout:
            raise TopologyNotReady(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def a_forked_child_runs(thread_prefix: str) -> bool:
    """Fork; return whether the child runs a thread whose name starts with `thread_prefix`.

    Threads do not survive a fork: a topology must start its watcher again in the child.
    """
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: say, and leave at once
            running = any(t.name.startswith(thread_prefix) for t in threading.enumerate())
            os.write(write, b"1" if running else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        return os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.close(write)


def _admin(port: int) -> redis.Redis:
    """Return a plain client for one node, for administration only."""
    return redis.Redis(
        host=_HOST,
        port=port,
        socket_timeout=2,
        socket_connect_timeout=1,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


@contextmanager
def _client(port: int) -> Iterator[redis.Redis]:
    client = _admin(port)
    try:
        yield client
    finally:
        client.close()


def _pick_cluster_port() -> int:
    """Return a free port whose bus port is free too."""
    for _attempt in range(200):
        port = random.choice(_CLUSTER_PORTS)
        if port_is_free(port) and port_is_free(port + 10_000):
            return port
    raise RedisServerError("no free loopback port pair (port, port + 10000) for a cluster node")


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: a node's id, port, role and primary."""

    node_id: str
    port: int
    is_primary: bool
    primary_id: str | None
    failed: bool


class _Servers:
    """The processes of one topology, closed together."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="tiercache-topology-"))
        self.servers: list[RedisServer] = []

    def server_on(self, port: int) -> RedisServer:
        """Return the server listening on `port`."""
        return next(server for server in self.servers if server.port == port)

    def pids(self) -> list[int]:
        """Return the PIDs of the running processes."""
        return [server.pid for server in self.servers if server.is_running()]

    def close(self) -> None:
        """Stop every process by PID and delete the files."""
        for server in self.servers:
            server.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        raise NotImplementedError


class RedisClusterServers(_Servers):
    """A Redis Cluster of `primaries` primaries, each with `replicas` replicas."""

    def __init__(self, primaries: int = 3, replicas: int = 1, *extra_args: str) -> None:
        super().__init__()
        self._primaries = primaries
        self._replicas = replicas
        self._extra_args = extra_args
        self._healthy = False

    @property
    def seed_url(self) -> str:
        """Return the URL of one running node (one seed is enough for a cluster client)."""
        return f"redis://{_HOST}:{self._running()[0].port}/0"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """Return (host, port) of every node."""
        return [(_HOST, server.port) for server in self.servers]

    def start(self) -> Self:
        """Start the nodes, assign slots, join them and wait until the cluster is ready."""
        total = self._primaries * (1 + self._replicas)
        for _ in range(total):
            server = RedisServer(*_CLUSTER_ARGS, *self._extra_args, pick_port=_pick_cluster_port)
            self.servers.append(server.start())
        primaries = self.servers[: self._primaries]
        bounds = [round(i * _SLOTS / self._primaries) for i in range(self._primaries + 1)]
        for epoch, server in enumerate(self.servers, start=1):
            with _client(server.port) as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for i, server in enumerate(primaries):
            with _client(server.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
        for server in self.servers[1:]:
            with _client(server.port) as client:
                client.execute_command("CLUSTER", "MEET", _HOST, self.servers[0].port)
        wait_until(self._all_nodes_known, f"{total} cluster nodes to know each other")
        replicas = self.servers[self._primaries :]
        for i, server in enumerate(replicas):
            primary_id = self._node_id(primaries[i % self._primaries].port)
            with _client(server.port) as client:
                client.execute_command("CLUSTER", "REPLICATE", primary_id)
        self.wait_ready()
        return self

    def nodes(self) -> list[ClusterNode]:
        """Return the cluster as a running node sees it."""
        with _client(self._running()[0].port) as client:
            text: str = client.execute_command("CLUSTER", "NODES")
        nodes = []
        for line in text.splitlines():
            node_id, address, flags, primary = line.split()[:4]
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            flag_set = set(flags.split(","))
            nodes.append(
                ClusterNode(
                    node_id,
                    port,
                    "master" in flag_set,
                    None if primary == "-" else primary,
                    bool(flag_set & {"fail", "fail?"}),
                )
            )
        return sorted(nodes, key=lambda node: node.port)

    def primaries(self) -> list[RedisServer]:
        """Return the servers that are primaries now, healthy ones only."""
        ports = {node.port for node in self.nodes() if node.is_primary and not node.failed}
        return [server for server in self.servers if server.port in ports]

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """Return a replica of `primary`."""
        nodes = self.nodes()
        primary_id = next(node.node_id for node in nodes if node.port == primary.port)
        port = next(node.port for node in nodes if node.primary_id == primary_id)
        return self.server_on(port)

    def primary_for(self, key: str) -> RedisServer:
        """Return the primary that owns `key`'s slot now."""
        with _client(self._running()[0].port) as client:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            shards = client.execute_command("CLUSTER", "SLOTS")
        for start, end, owner, *_replicas in shards:
            if start <= slot <= end:
                return self.server_on(int(owner[1]))
        raise TopologyNotReady(f"no node serves slot {slot}")

    def failover(self, replica: RedisServer) -> None:
        """Run ``CLUSTER FAILOVER`` on `replica` and wait until the cluster is ready again."""
        self._healthy = False
        with _client(replica.port) as client:
            client.execute_command("CLUSTER", "FAILOVER")
        wait_until(lambda: self._role(replica.port) == "master", f"{replica} to be promoted")
        self.wait_ready()

    def kill_primary(self, primary: RedisServer) -> RedisServer:
        """SIGKILL `primary`, wait until its replica serves its slots; return that replica."""
        replica = self.replica_of(primary)
        self._healthy = False
        primary.kill()
        wait_until(
            lambda: self._role(replica.port) == "master",
            f"{replica} to take over from the killed {primary}",
        )
        wait_until(self._alive_nodes_agree, "the surviving nodes to agree on the slots")
        return replica

    def heal(self) -> None:
        """Restart dead nodes on their ports (they rejoin as replicas) and wait until ready."""
        if all(server.is_running() for server in self.servers) and self._healthy:
            return  # nothing was killed or failed over since the cluster was last ready
        for server in self.servers:
            if not server.is_running():
                server.start()
        self.wait_ready()

    def flushall(self) -> None:
        """Empty every primary."""
        for server in self.primaries():
            with _client(server.port) as client:
                client.flushall()

    def wait_ready(self) -> float:
        """Wait until every node says ``cluster_state:ok`` and agrees on the slots,
        and every replica's link to its primary is up."""
        waited = wait_until(self._ready, "the cluster to be ready")
        self._healthy = True
        return waited

    def _ready(self) -> bool:
        if not all(server.is_running() for server in self.servers):
            return False
        for server in self.servers:
            with _client(server.port) as client:
                if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                info = client.info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        if not self._alive_nodes_agree():
            return False
        nodes = self.nodes()
        primaries = [node for node in nodes if node.is_primary and not node.failed]
        return len(primaries) == self._primaries and all(
            sum(1 for node in nodes if node.primary_id == primary.node_id and not node.failed)
            == self._replicas
            for primary in primaries
        )

    def _alive_nodes_agree(self) -> bool:
        """Return whether every running node maps the slots to the same live primaries."""
        views = []
        for server in self._running():
            with _client(server.port) as client:
                if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
            views.append(sorted((start, end, int(owner[1])) for start, end, owner, *_ in slots))
        live = {server.port for server in self._running()}
        return all(view == views[0] for view in views) and all(
            port in live for _start, _end, port in views[0]
        )

    def _all_nodes_known(self) -> bool:
        for server in self.servers:
            with _client(server.port) as client:
                text: str = client.execute_command("CLUSTER", "NODES")
            lines = text.splitlines()
            if len(lines) != len(self.servers) or "handshake" in text or "noaddr" in text:
                return False
        return True

    def _node_id(self, port: int) -> str:
        with _client(port) as client:
            node_id: str = client.execute_command("CLUSTER", "MYID")
            return node_id

    def _role(self, port: int) -> str:
        with _client(port) as client:
            role: str = client.info("replication")["role"]
            return role

    def _running(self) -> list[RedisServer]:
        running = [server for server in self.servers if server.is_running()]
        if not running:
            raise TopologyNotReady("no cluster node is running")
        return running

    def __repr__(self) -> str:
        ports = ",".join(str(server.port) for server in self.servers)
        return f"<RedisClusterServers ports={ports}>"


class RedisSentinelServers(_Servers):
    """A master, `replicas` replicas and `sentinels` sentinels watching `service`."""

    def __init__(
        self,
        service: str = "mymaster",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
    ) -> None:
        super().__init__()
        self.service = service
        self._replicas = replicas
        self._sentinel_count = sentinels
        self._down_after_ms = down_after_ms
        self.data_servers: list[RedisServer] = []
        self.sentinel_servers: list[RedisServer] = []
        self._healthy = False

    @property
    def url(self) -> str:
        """Return ``redis://<service>/0``: the URL's host names the Sentinel service."""
        return f"redis://{self.service}/0"

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """Return (host, port) of every sentinel, as `sentinels=` takes them."""
        return [(_HOST, server.port) for server in self.sentinel_servers]

    def start(self) -> Self:
        """Start the master, its replicas and the sentinels; wait until the sentinels agree."""
        master = RedisServer(*_REPLICATION_ARGS).start()
        self.data_servers.append(master)
        for _ in range(self._replicas):
            replica = RedisServer(*_REPLICATION_ARGS, "--replicaof", _HOST, str(master.port))
            replica.start()
            self.data_servers.append(replica)
        quorum = self._sentinel_count // 2 + 1
        for i in range(self._sentinel_count):
            config = self._dir / f"sentinel-{i}.conf"
            config.write_text(
                f"sentinel monitor {self.service} {_HOST} {master.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.service} {self._down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            self.sentinel_servers.append(RedisServer("--sentinel", config_file=config).start())
        self.servers = [*self.data_servers, *self.sentinel_servers]
        self.wait_ready()
        return self

    def master(self) -> RedisServer:
        """Return the server every sentinel names as master."""
        port = self._agreed_master()
        if port is None:
            raise TopologyNotReady(f"the sentinels disagree on the master of {self.service}")
        return self.server_on(port)

    def replicas(self) -> list[RedisServer]:
        """Return the data servers that are not the master."""
        master = self.master()
        return [server for server in self.data_servers if server is not master]

    def kill_master(self) -> RedisServer:
        """SIGKILL the master and wait until every sentinel names a promoted replica."""
        old = self.master()
        self._healthy = False
        old.kill()
        wait_until(
            lambda: (
                self._agreed_master() not in (None, old.port)
                and _role_of(self._agreed_master()) == "master"
            ),
            f"the sentinels to promote a replica of the killed {old}",
        )
        return self.master()

    def heal(self) -> None:
        """Restart dead servers (an old master as a replica) and wait until ready."""
        if all(server.is_running() for server in self.servers) and self._healthy:
            return
        for sentinel in self.sentinel_servers:
            if not sentinel.is_running():
                sentinel.start()
        # A master just killed is still named until the replica's promotion is agreed.
        wait_until(self._live_master, "the sentinels to name a master that runs")
        master = self.master()
        for server in self.data_servers:
            if not server.is_running():
                server.start()
                with _client(server.port) as client:
                    client.execute_command("REPLICAOF", _HOST, master.port)
        self.wait_ready()

    def flushall(self) -> None:
        """Empty the master (replicas follow)."""
        with _client(self.master().port) as client:
            client.flushall()

    def wait_ready(self) -> float:
        """Wait until all sentinels agree on a master that sees every replica linked,
        and each sentinel knows the others and every replica as healthy."""
        waited = wait_until(self._ready, "the sentinels to agree on a healthy master")
        self._healthy = True
        return waited

    def _ready(self) -> bool:
        if not all(server.is_running() for server in self.servers):
            return False
        master_port = self._agreed_master()
        if master_port is None or _role_of(master_port) != "master":
            return False
        for server in self.data_servers:
            if server.port == master_port:
                continue
            with _client(server.port) as client:
                info = client.info("replication")
            if info["role"] != "slave" or info.get("master_link_status") != "up":
                return False
            if int(info["master_port"]) != master_port:
                return False
        for sentinel in self.sentinel_servers:
            with _client(sentinel.port) as client:
                state = client.execute_command("SENTINEL", "MASTER", self.service)
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
            state = _pairs(state)
            if int(state["num-other-sentinels"]) != self._sentinel_count - 1:
                return False
            if state["flags"] != "master":
                return False
            healthy = [_pairs(r) for r in replicas if _pairs(r)["flags"] == "slave"]
            if len(healthy) != self._replicas:
                return False
        return True

    def _live_master(self) -> bool:
        port = self._agreed_master()
        return port is not None and self.server_on(port).is_running() and _role_of(port) == "master"

    def _agreed_master(self) -> int | None:
        """Return the master port every running sentinel names, or None if they differ."""
        ports = set()
        for sentinel in self.sentinel_servers:
            if not sentinel.is_running():
                continue
            with _client(sentinel.port) as client:
                reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            ports.add(int(reply[1]))
        return ports.pop() if len(ports) == 1 else None

    def __repr__(self) -> str:
        return f"<RedisSentinelServers {self.service} sentinels={self.sentinels}>"


def _role_of(port: int | None) -> str | None:
    if port is None:
        return None
    with _client(port) as client:
        role: str = client.info("replication")["role"]
        return role


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    """Return a Sentinel reply (a flat list of names and values) as a dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))

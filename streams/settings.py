"""One settings object, read from RILLET_* environment variables.

Defaults point at the embedded stack that `rillet up` starts, so a fresh
checkout works with no configuration at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from streams.errors import ConfigError

__all__ = ["ENV_VARS", "LOG_LEVELS", "Settings", "redact_url"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***', safe for logs and errors."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")  # hosts may be a list (a cluster's nodes)
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def _setting(default: object, env: str, doc: str, *, secret: bool = False, secret_url: bool = False):
    """A settings field: its environment variable, its documentation, and whether it is secret."""
    return field(default=default, repr=not secret,
                 metadata={"env": env, "doc": doc, "secret": secret, "secret_url": secret_url})


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the broker, Redis, registry and offline store are, and how to talk to them."""

    bootstrap_servers: str = _setting(
        "127.0.0.1:9092", "RILLET_BOOTSTRAP_SERVERS", "Kafka bootstrap servers (host:port, comma separated)"
    )
    broker_flavor: str = _setting(
        "tansu", "RILLET_BROKER_FLAVOR",
        "`tansu` switches on the local-broker workarounds; `kafka` for Apache Kafka or Redpanda",
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0", "RILLET_REDIS_URL",
        "Online store; `rediss://` for TLS, `redis+cluster://host:port,host:port` for a Redis Cluster; "
        "password in the URL or RILLET_REDIS_PASSWORD", secret_url=True,
    )
    redis_password: str = _setting(
        "", "RILLET_REDIS_PASSWORD", "Redis password (never logged)", secret=True
    )
    schema_registry_url: str = _setting(
        "", "RILLET_SCHEMA_REGISTRY_URL",
        "Confluent-compatible schema registry; empty: schema ids are kept in Redis", secret_url=True,
    )
    worker_group: str = _setting(
        "rillet-worker", "RILLET_WORKER_GROUP", "Consumer group (and Faust app id) of the stream workers"
    )
    offline_path: str = _setting(
        "data/offline", "RILLET_OFFLINE_PATH", "Root of the Parquet offline store"
    )
    state_dir: str = _setting(
        "data/state", "RILLET_STATE_DIR",
        "Workers' local state directory: each worker process on the machine takes a `slot-N` directory under it"
    )
    web_port: int = _setting(
        6066, "RILLET_WEB_PORT", "Worker's HTTP port for /health and /metrics"
    )
    web_host: str = _setting(
        "127.0.0.1", "RILLET_WEB_HOST", "Address the worker's HTTP port binds (0.0.0.0 in a container)"
    )
    partitions: int = _setting(
        4, "RILLET_PARTITIONS", "Partitions of the topics rillet creates"
    )
    batch_size: int = _setting(
        8000, "RILLET_BATCH_SIZE", "Most events per worker batch: larger is faster under load, the wait bounds latency"
    )
    batch_wait_ms: int = _setting(
        200, "RILLET_BATCH_WAIT_MS", "Longest a fetch waits for events when there are none (bounds idle latency)"
    )
    fetch_bytes: int = _setting(
        8 * 1024 * 1024, "RILLET_FETCH_BYTES",
        "Most bytes a worker's fetch brings per partition: larger fetches fewer times (memory: this x partitions)"
    )
    hot_states: int = _setting(
        100_000, "RILLET_HOT_STATES",
        "Entity states a worker keeps decoded between batches (most recently used): fewer decode per batch"
    )
    state_sweep_ms: int = _setting(
        30_000, "RILLET_STATE_SWEEP_MS", "How often a worker drops window state no new event can reach"
    )
    state_store: str = _setting(
        "rocksdb", "RILLET_STATE_STORE",
        "Where a worker keeps its state tables: `rocksdb` (on local disk under RILLET_STATE_DIR, so a restart "
        "reads only the changelog written since) or `memory` (rebuilt from the changelog at every start)",
    )
    standby_replicas: int = _setting(
        0, "RILLET_STANDBY_REPLICAS",
        "Workers that keep a standby copy of each partition's state by following its changelog, so one takes "
        "over at once when the owner dies (Faust's table_standby_replicas); each costs a copy of the state",
    )
    session_timeout_s: float = _setting(
        6.0, "RILLET_SESSION_TIMEOUT",
        "Seconds a worker may go without a heartbeat before its group drops it and hands its partitions to the "
        "others (to a standby, if any): shorter fails over sooner, too short drops a busy worker; Kafka refuses "
        "less than its group.min.session.timeout.ms (6 s by default)",
    )
    redis_replica_acks: int = _setting(
        1, "RILLET_REDIS_REPLICA_ACKS",
        "Replicas of each Redis master that must acknowledge a batch's writes (WAIT) before its offsets are "
        "committed, capped by the replicas attached; 0: do not wait",
    )
    features: str = _setting(
        "examples/payments/features.py", "RILLET_FEATURES", "Feature definitions file (Python) the commands load"
    )
    log_level: str = _setting(
        "info", "RILLET_LOG_LEVEL", "debug, info, warning or error"
    )
    served_log_rate: float = _setting(
        0.0, "RILLET_SERVED_LOG_RATE",
        "Share of online reads (0-1) logged to the served-feature topic for `rillet skew`; 0: off"
    )
    read_value_cache: int = _setting(
        16_384, "RILLET_READ_VALUE_CACHE",
        "States whose feature values `rillet serve` keeps between reads, each until the next moment a value can "
        "change (~3 KB each; exact: keyed on the state's bytes); 0: every read decodes and evaluates",
    )
    served_log_topic: str = _setting(
        "rillet.served", "RILLET_SERVED_LOG_TOPIC", "Topic of the served-feature log (Avro)"
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read every RILLET_* variable; unknown or malformed values are refused."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in env and env[name] != "":
                raw = env[name]
                if f.type in ("int", int):
                    try:
                        values[f.name] = int(raw)
                    except ValueError:
                        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
                elif f.type in ("float", float):
                    try:
                        values[f.name] = float(raw)
                    except ValueError:
                        raise ConfigError(f"{name}={raw!r} is not a number") from None
                else:
                    values[f.name] = raw
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse values that would only fail later, deep inside a client."""
        if self.broker_flavor not in ("tansu", "kafka"):
            raise ConfigError(f"RILLET_BROKER_FLAVOR={self.broker_flavor!r}: use 'tansu' or 'kafka'")
        if urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
            raise ConfigError(
                f"RILLET_REDIS_URL={redact_url(self.redis_url)!r}: use redis://, rediss://, unix://, "
                "or redis+cluster://host:port,host:port for a Redis Cluster"
            )
        if not 0.0 <= self.served_log_rate <= 1.0:
            raise ConfigError(f"RILLET_SERVED_LOG_RATE={self.served_log_rate}: a share of reads, from 0 to 1")
        if self.state_store not in ("rocksdb", "memory"):
            raise ConfigError(f"RILLET_STATE_STORE={self.state_store!r}: use 'rocksdb' or 'memory'")
        if self.read_value_cache < 0:
            raise ConfigError(f"RILLET_READ_VALUE_CACHE={self.read_value_cache}: states kept, 0 or more")
        if self.standby_replicas < 0 or self.redis_replica_acks < 0:
            raise ConfigError("RILLET_STANDBY_REPLICAS and RILLET_REDIS_REPLICA_ACKS must be 0 or more")
        if self.session_timeout_s < 1:
            raise ConfigError(f"RILLET_SESSION_TIMEOUT={self.session_timeout_s}: at least 1 second")
        if self.partitions < 1:
            raise ConfigError(f"RILLET_PARTITIONS={self.partitions}: must be at least 1")
        if self.fetch_bytes < 65536:
            raise ConfigError(f"RILLET_FETCH_BYTES={self.fetch_bytes}: must be at least 65536")
        if self.hot_states < 0:
            raise ConfigError(f"RILLET_HOT_STATES={self.hot_states}: must be 0 or more")
        if self.batch_size < 1:
            raise ConfigError(f"RILLET_BATCH_SIZE={self.batch_size}: must be at least 1")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"RILLET_LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")

    @property
    def offline_root(self) -> Path:
        return Path(self.offline_path)

    @property
    def is_tansu(self) -> bool:
        return self.broker_flavor == "tansu"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The RILLET_* variables that reproduce these settings in a child process (secrets included)."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in fields(self)}

    def safe_view(self) -> dict[str, object]:
        """Settings as a dict with every secret hidden: the only form that is ever logged."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = "***" if value else ""
            elif f.metadata.get("secret_url") and value:
                value = redact_url(str(value))
            out[f.metadata["env"]] = value
        return out

    def __repr__(self) -> str:
        return f"Settings({self.safe_view()!r})"


ENV_VARS: list[tuple[str, str, str]] = [
    (f.metadata["env"], str(f.default), f.metadata["doc"]) for f in fields(Settings)
]

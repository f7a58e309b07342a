"""Fixtures: the real stack, started once per test session.

`stack` is the embedded one (Tansu + a Valkey of its own on a free port: a test never writes
to a Redis it did not start)
and, where a Docker engine answers, also Apache Kafka and Redis containers
(testcontainers): integration tests that take `stack` run on both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack


def docker_engine_problem() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # no socket, no permission, no daemon: all mean "skip"
        return f"no Docker engine answers ({type(exc).__name__}); the container variant needs one"
    return None


class ContainerStack:
    """Kafka and Redis in containers, with settings pointing at them."""

    def __init__(self) -> None:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        self.kafka = KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft()
        self.redis = RedisContainer("redis:7.4-alpine")

    def __enter__(self) -> ContainerStack:
        self.kafka.start()
        self.redis.start()
        host, port = self.redis.get_container_host_ip(), self.redis.get_exposed_port(6379)
        self.settings = Settings.from_env({}, bootstrap_servers=self.kafka.get_bootstrap_server(),
                                          broker_flavor="kafka", redis_url=f"redis://{host}:{port}/0")
        return self

    def __exit__(self, *exc: object) -> None:
        self.redis.stop()
        self.kafka.stop()


@pytest.fixture(scope="session", params=["embedded", "containers"])
def stack(request, tmp_path_factory):
    """The running stack; "cluster" (tests marked tests.helpers.WITH_CLUSTER) is the embedded one with a three-master
    Valkey cluster of its own for Redis."""
    if request.param == "cluster":
        from streams.stack.redis_cluster import LocalRedisCluster

        workdir = tmp_path_factory.mktemp("cluster-stack")
        with LocalRedisCluster(3, workdir / "redis") as cluster:
            settings = Settings.from_env({}, redis_url=cluster.url)
            with EmbeddedStack(settings, broker_port=0, redis="external", workdir=workdir, registry=True) as running:
                running.redis_cluster = cluster
                yield running
        return
    if request.param == "containers":
        problem = docker_engine_problem()
        if problem:
            pytest.skip(problem)
        with ContainerStack() as running:
            yield running
        return
    workdir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir, registry=True) as running:
        yield running


#: seconds each test file took in a `make test` run on 2 cores (`make test-durations` writes it): `make test` runs
#: the longest files first, so the two processes end together instead of one waiting on a long file picked last
DURATIONS = Path(__file__).with_name("durations.json")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    if not DURATIONS.exists():
        return
    seconds = json.loads(DURATIONS.read_text())
    order = {path: -took for path, took in seconds.items()}
    # a new file has no figure yet: integration files take about a minute, others a second
    items.sort(key=lambda item: order.get(item.nodeid.split("::")[0],
                                          -60.0 if "/integration/" in item.nodeid else -1.0))

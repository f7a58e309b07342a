"""docker-compose.yml wires every service the worker needs, by the names the settings read."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import ENV_VARS, Settings

COMPOSE = yaml.safe_load((Path(__file__).parent.parent / "docker-compose.yml").read_text())


WORKERS = sorted(name for name, service in COMPOSE["services"].items()
                 if (service.get("command") or [""])[0] == "worker")


def test_there_are_workers_on_one_redis_and_on_a_cluster():
    urls = {COMPOSE["services"][w]["environment"]["RILLET_REDIS_URL"].split(":")[0] for w in WORKERS}
    assert urls == {"redis", "redis+cluster"}, urls


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_environment_uses_only_known_settings(worker):
    env = COMPOSE["services"][worker]["environment"]
    known = {name for name, _, _ in ENV_VARS}
    assert set(env) <= known, set(env) - known
    Settings.from_env({k: str(v) for k, v in env.items()})  # and the values are valid


@pytest.mark.parametrize("worker", WORKERS)
def test_every_address_the_worker_uses_is_a_defined_service(worker):
    services = COMPOSE["services"]
    service = services[worker]
    env = service["environment"]
    redis_hosts = [h.rpartition(":")[0] for h in urlsplit(env["RILLET_REDIS_URL"]).netloc.split(",")]
    hosts = [
        ("RILLET_BOOTSTRAP_SERVERS", env["RILLET_BOOTSTRAP_SERVERS"].split(":")[0]),
        *(("RILLET_REDIS_URL", host) for host in redis_hosts),
        ("RILLET_SCHEMA_REGISTRY_URL", urlsplit(env["RILLET_SCHEMA_REGISTRY_URL"]).hostname),
    ]
    for variable, host in hosts:
        assert host in services, f"{variable} points at {host!r}, which is not a service"
        assert host in service["depends_on"], f"{worker} does not wait for {host}"
        assert service["depends_on"][host]["condition"] == "service_healthy"
        assert "healthcheck" in services[host], f"{host} has no healthcheck"
        assert set(services[host].get("profiles", [])) <= set(service.get("profiles", [])), \
            f"{worker} needs {host}, which another profile starts"
    if len(redis_hosts) > 1:  # a cluster: its slots are assigned before any worker starts
        assert service["depends_on"]["redis-cluster-init"]["condition"] == "service_completed_successfully"
    assert env["RILLET_BROKER_FLAVOR"] == "kafka"  # no Tansu workarounds on a real broker
    assert "healthcheck" in service
    assert Path(__file__).parent.parent.joinpath("Dockerfile").is_file()


def test_workers_of_different_deployments_write_different_offline_stores():
    paths = {}
    for worker in WORKERS:
        env = COMPOSE["services"][worker]["environment"]
        paths.setdefault(env["RILLET_REDIS_URL"], set()).add(env["RILLET_OFFLINE_PATH"])
    assert all(len(p) == 1 for p in paths.values())  # one store per deployment ...
    assert len({next(iter(p)) for p in paths.values()}) == len(paths)  # ... and not shared between them


def test_the_cluster_profile_has_a_dask_scheduler_and_workers_on_the_shared_offline_store():
    services = COMPOSE["services"]
    assert "cluster" in services["dask-scheduler"]["profiles"]
    assert "healthcheck" in services["dask-scheduler"]
    workers = [name for name, service in services.items()
               if (service.get("entrypoint") or [])[:2] == ["dask", "worker"]]
    assert len(workers) >= 2
    cluster_store = {services[w]["environment"]["RILLET_OFFLINE_PATH"] for w in WORKERS
                     if "cluster" in services[w].get("profiles", [])}
    for worker in workers:
        service = services[worker]
        assert service["entrypoint"][2] == "tcp://dask-scheduler:8786"
        assert service["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
        assert service["build"] == "."  # rillet's image: the join's tasks call rillet's functions
        assert {service["environment"]["RILLET_OFFLINE_PATH"]} == cluster_store  # the rows the join reads
        assert service["volumes"] == services["worker-cluster-a"]["volumes"]

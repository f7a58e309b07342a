"""docker-compose.yml wires every service the worker needs, by the names the settings read."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from streams.settings import ENV_VARS, Settings

COMPOSE = yaml.safe_load((Path(__file__).parent.parent / "docker-compose.yml").read_text())


def test_worker_environment_uses_only_known_settings():
    env = COMPOSE["services"]["worker"]["environment"]
    known = {name for name, _, _ in ENV_VARS}
    assert set(env) <= known, set(env) - known
    Settings.from_env({k: str(v) for k, v in env.items()})  # and the values are valid


def test_every_address_the_worker_uses_is_a_defined_service():
    services = COMPOSE["services"]
    env = services["worker"]["environment"]
    hosts = {
        "RILLET_BOOTSTRAP_SERVERS": env["RILLET_BOOTSTRAP_SERVERS"].split(":")[0],
        "RILLET_REDIS_URL": urlsplit(env["RILLET_REDIS_URL"]).hostname,
        "RILLET_SCHEMA_REGISTRY_URL": urlsplit(env["RILLET_SCHEMA_REGISTRY_URL"]).hostname,
    }
    for variable, host in hosts.items():
        assert host in services, f"{variable} points at {host!r}, which is not a service"
        assert host in services["worker"]["depends_on"], f"worker does not wait for {host}"
        assert services["worker"]["depends_on"][host]["condition"] == "service_healthy"
        assert "healthcheck" in services[host], f"{host} has no healthcheck"
    assert env["RILLET_BROKER_FLAVOR"] == "kafka"  # no Tansu workarounds on a real broker
    assert "healthcheck" in services["worker"]
    assert Path(__file__).parent.parent.joinpath("Dockerfile").is_file()

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.settings import ENV_VARS, Settings, redact_url


def test_defaults_point_at_the_embedded_stack():
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.redis_url.startswith("redis://127.0.0.1:6379")
    assert settings.is_tansu


def test_environment_overrides_and_types():
    settings = Settings.from_env({"RILLET_PARTITIONS": "8", "RILLET_BROKER_FLAVOR": "kafka"})
    assert settings.partitions == 8
    assert not settings.is_tansu


@pytest.mark.parametrize("env", [{"RILLET_BROKER_FLAVOR": "pulsar"}, {"RILLET_PARTITIONS": "0"},
                                 {"RILLET_BATCH_SIZE": "x"}])
def test_bad_values_are_refused(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_secrets_never_show():
    settings = Settings.from_env({"RILLET_REDIS_URL": "rediss://app:s3cret@cache:6380/0",
                                  "RILLET_REDIS_PASSWORD": "pw-9876"})
    text = repr(settings) + str(settings.safe_view())
    assert "s3cret" not in text and "pw-9876" not in text
    assert "app:***@cache:6380" in text
    assert redact_url("redis://h:6379") == "redis://h:6379"


def test_every_setting_has_a_variable_and_a_doc():
    names = [name for name, _, _ in ENV_VARS]
    assert len(names) == len(set(names))
    assert all(name.startswith("RILLET_") for name in names)
    assert all(doc for _, _, doc in ENV_VARS)


def test_a_cluster_url_is_accepted_and_its_password_never_shown():
    from sinks.redis_client import _cluster_args, is_cluster

    url = "redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001,node-c:7002"
    settings = Settings.from_env({"RILLET_REDIS_URL": url})
    assert is_cluster(settings.redis_url)
    assert "s3cret" not in redact_url(url) and redact_url(url).endswith("@10.0.0.1:7000,10.0.0.2:7001,node-c:7002")
    nodes, kwargs = _cluster_args(settings)
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("node-c", 7002)]
    assert kwargs["password"] == "s3cret" and "ssl" not in kwargs
    assert _cluster_args(Settings.from_env({"RILLET_REDIS_URL": "rediss+cluster://h:1"}))[1]["ssl"] is True

"""`rillet schemas check` in a throwaway git repo: an incompatible commit fails, naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def write(path, *fields):
    path.write_text(json.dumps({"type": "record", "name": "Payment", "fields": list(fields)}))


def committed_schema(repo, *fields, message="v1"):
    """A new git repo holding payment.avsc with `fields`, committed once; returns the file."""
    git(repo, "init", "-q", "-b", "main")
    schema = repo / "payment.avsc"
    write(schema, *fields)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", message)
    return schema


def rillet_check(folder, registry_url=""):
    env = {**os.environ, "RILLET_SCHEMA_REGISTRY_URL": registry_url}
    return subprocess.run([sys.executable, "-m", "streams.cli", "schemas", "check", "--dir", str(folder),
                           "--base", "HEAD"], capture_output=True, text=True, timeout=60, env=env)


def test_incompatible_change_fails_naming_the_field(tmp_path):
    schema = committed_schema(tmp_path, {"name": "user_id", "type": "string"}, {"name": "amount", "type": "double"})

    write(schema, {"name": "user_id", "type": "string"}, {"name": "amount", "type": "double"},
          {"name": "merchant", "type": "string", "default": ""})
    ok = rillet_check(tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    git(tmp_path, "commit", "-qam", "v2: a field with a default")

    write(schema, {"name": "user_id", "type": "string"}, {"name": "amount", "type": "string"},
          {"name": "merchant", "type": "string", "default": ""})
    bad = rillet_check(tmp_path)
    assert bad.returncode == 1
    assert "payment-value: /fields/amount/type:" in bad.stdout
    assert "cannot be read as string" in bad.stdout


def test_mode_from_compatibility_json(tmp_path):
    schema = committed_schema(tmp_path, {"name": "user_id", "type": "string"})
    write(schema, {"name": "user_id", "type": "string"}, {"name": "x", "type": "int"})  # no default
    assert rillet_check(tmp_path).returncode == 1                                         # BACKWARD
    (tmp_path / "compatibility.json").write_text(json.dumps({"modes": {"payment-value": "FORWARD"}}))
    assert rillet_check(tmp_path).returncode == 0                                         # old readers skip x


def test_registered_versions_count_too(tmp_path):
    from confluent_kafka.schema_registry import Schema

    from tests.helpers import RegistryProcess

    committed_schema(tmp_path, {"name": "user_id", "type": "string"}, {"name": "amount", "type": "string"},
                     message="first commit of this file: git alone sees no history")
    registry = RegistryProcess(tmp_path / "registry.json").start()
    try:
        registered = {"type": "record", "name": "Payment",
                      "fields": [{"name": "user_id", "type": "string"}, {"name": "amount", "type": "double"}]}
        registry.client().register_schema("payment-value", Schema(json.dumps(registered), "AVRO"))
        assert rillet_check(tmp_path).returncode == 0
        checked = rillet_check(tmp_path, registry.url)
    finally:
        registry.stop()
    assert checked.returncode == 1
    assert "payment-value: /fields/amount/type:" in checked.stdout


def test_subjects_come_from_the_views_that_read_the_file(tmp_path):
    """Producers register `<topic>-value` (TopicNameStrategy): that history is the one compared."""
    from confluent_kafka.schema_registry import Schema

    from tests.helpers import RegistryProcess

    committed_schema(tmp_path, {"name": "user_id", "type": "string"}, {"name": "amount", "type": "string"})
    features = tmp_path / "features.py"
    features.write_text('from streams import Feature, FeatureView, Tumbling\n'
                        'payments = FeatureView(name="payments", topic="payments", schema="payment.avsc",\n'
                        '    entity="user_id", features=[Feature("amount", "count", Tumbling("5m"))])\n')
    registry = RegistryProcess(tmp_path / "registry.json").start()
    try:
        registered = {"type": "record", "name": "Payment",
                      "fields": [{"name": "user_id", "type": "string"}, {"name": "amount", "type": "double"}]}
        registry.client().register_schema("payments-value", Schema(json.dumps(registered), "AVRO"))
        env = {**os.environ, "RILLET_SCHEMA_REGISTRY_URL": registry.url}
        checked = subprocess.run([sys.executable, "-m", "streams.cli", "schemas", "check", "--features",
                                  str(features), "--dir", str(tmp_path), "--base", "HEAD"],
                                 capture_output=True, text=True, timeout=60, env=env)
    finally:
        registry.stop()
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "payments-value: /fields/amount/type:" in checked.stdout
    assert "payment.avsc checked as payments-value (read by view payments; BACKWARD)" in checked.stderr


def test_outside_a_git_repository_is_one_line_saying_what_that_means(tmp_path):
    write(tmp_path / "payment.avsc", {"name": "user_id", "type": "string"})
    result = rillet_check(tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "is not in a git repository, so there are no earlier versions to check against" in line
    assert "RILLET_SCHEMA_REGISTRY_URL" in line and "[" not in line

"""Bad CLI input: one line, non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def rillet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=60, env=full_env)


@pytest.mark.parametrize(("args", "env", "code", "needle"), [
    (["bogus"], None, 2, "invalid choice"),
    (["get", "--view", "payments"], None, 2, "--entity"),
    (["get", "--view", "nope", "--entity", "u1"], None, 1, "no view named 'nope'"),
    (["get", "--view", "payments", "--entity", "u1", "--as-of", "yesterday"], None, 2, "neither epoch ms"),
    (["get", "--view", "payments", "--entity", "u1", "--as-of", "2026-01-01T00:00:00"], None, 2, "no timezone"),
    (["worker", "--features", "missing.py"], None, 1, "does not exist"),
    (["publish", "--view", "payments", "--file", "missing.jsonl"], None, 1, "does not exist"),
    (["get", "--view", "payments", "--entity", "u1"], {"RILLET_PARTITIONS": "many"}, 1, "not a whole number"),
    (["get", "--view", "payments", "--entity", "u1"], {"RILLET_REDIS_URL": "http://u:hunter2@h"}, 1, "redis://"),
])
def test_bad_input_is_one_line(args, env, code, needle):
    result = rillet(*args, env=env)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rillet: error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr

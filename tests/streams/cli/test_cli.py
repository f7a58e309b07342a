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


def _features(tmp_path, body: str):
    path = tmp_path / "features.py"
    path.write_text(body)
    return str(path)


GOOD_VIEW = """
from streams import Feature, FeatureView, Tumbling
from schemas import SCHEMA_DIR
payments = FeatureView(name="payments", topic="payments", schema=SCHEMA_DIR / "payment.avsc",
                       entity={entity!r}, event_time={event_time!r},
                       features=[Feature({field!r}, {agg!r}, Tumbling("5m"))])
"""


@pytest.mark.parametrize(("body", "needle"), [
    ("x = (\n", "features.py:1: syntax error"),
    ("import os\nimport no_such_module_here\n", "features.py:2: ModuleNotFoundError: No module named"),
    ("from streams import FeatureView\n\nraise RuntimeError('boom')\n", "features.py:3: RuntimeError: boom"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amuont", agg="sum"),
     "view payments: feature amuont_sum_5m reads field 'amuont', which is not a field of schema payment.avsc; "
     "its fields: user_id, amount, merchant, event_time"),
    (GOOD_VIEW.format(entity="user", event_time="event_time", field="amount", agg="sum"),
     "view payments: entity 'user', which is not a field"),
    (GOOD_VIEW.format(entity="user_id", event_time="ts", field="amount", agg="sum"),
     "view payments: event_time 'ts', which is not a field"),
    (GOOD_VIEW.format(entity="user_id", event_time="merchant", field="amount", agg="sum"),
     "event_time 'merchant' is string"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="merchant", agg="mean"),
     "feature merchant_mean_5m: mean needs a number, but field 'merchant' is string"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="last_k"),
     "aggregation 'last_k' takes a parameter, e.g. last_k(5)"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="approx_percentile(99)"),
     "approx_percentile(99): q must be a number in (0, 1]"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="merchant", agg="approx_percentile(0.5)"),
     "approx_percentile(0.5) needs a number, but field 'merchant' is string"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="decayed_sum(1h)"),
     "decayed_sum(1h) is defined over the entity's whole history; use Lifetime() as its window"),
    (GOOD_VIEW.format(entity=("user_id", "shop"), event_time="event_time", field="amount", agg="sum"),
     "view payments: entity 'shop', which is not a field"),
    (GOOD_VIEW.format(entity=("user_id", "amount"), event_time="event_time", field="amount", agg="sum"),
     "view payments: entity ('user_id', 'amount') names 'amount', which may be null in schema payment.avsc; every "
     "part of a composite entity must be a required field"),
    (GOOD_VIEW.format(entity=("user_id", "event_time"), event_time="event_time", field="amount", agg="sum"),
     "names the event_time field 'event_time'"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="sum")
     + "from streams import FeatureService\nfraud = FeatureService('fraud', ['payments:amount_mean_5m'])\n",
     "FeatureService fraud: view payments has no feature 'amount_mean_5m'; did you mean 'amount_sum_5m'? it has: "
     "amount_sum_5m"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="sum")
     + "from streams import FeatureService\nfraud = FeatureService('fraud', ['payments:amount_sum_5m', 'ratio'])\n",
     "FeatureService fraud: 'ratio' is neither view:feature nor a derived feature"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="sum")
     + "from streams import derived\n@derived(inputs=['logins:count_5m'])\ndef ratio(n):\n    return n\n",
     "derived feature ratio: 'logins:count_5m' names no view; views: payments"),
    (GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount", agg="sum")
     + "from streams import derived\n@derived(inputs=['paymnets:amount_sum_5m'])\ndef ratio(n):\n    return n\n",
     "names no view; did you mean 'payments'? views: payments"),
])
@pytest.mark.parametrize("command", [["get", "--view", "payments", "--entity", "u1"], ["worker"]])
def test_broken_features_file_is_one_line(tmp_path, body, needle, command):
    path = _features(tmp_path, body)
    result = rillet(command[0], "--features", path, *command[1:])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("rillet: error:") and needle in line, line


def test_a_good_definition_still_loads(tmp_path):
    from streams.definitions.view import load_views

    [view] = load_views(_features(tmp_path, GOOD_VIEW.format(entity="user_id", event_time="event_time",
                                                             field="merchant", agg="count_distinct")))
    assert view.feature_names == ["merchant_count_distinct_5m"]


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["publish", "--veiw", "payments", "--file", "x.jsonl"], None, "unknown flag --veiw (did you mean --view?)"),
    (["get", "--view", "payments", "--entity", "u1", "--as_of", "1"], None, "unknown flag --as_of"),
    (["get", "--view", "payments", "--entity", "u1"], {"RILLET_LOG_LEVEL": "verbose"},
     "RILLET_LOG_LEVEL='verbose': use one of debug, info, warning, error"),
])
def test_misspelled_flags_and_settings_are_named(args, env, needle):
    result = rillet(*args, env=env)
    assert result.returncode in (1, 2), result.stderr
    [line] = result.stderr.strip().splitlines()
    assert needle in line, line


def test_a_directory_as_features_file_says_so(tmp_path):
    result = rillet("get", "--features", str(tmp_path), "--view", "payments", "--entity", "u1")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "is a directory" in line, line


def test_redis_down_is_one_line():
    from streams.stack.embedded import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = rillet("get", "--view", "payments", "--entity", "u1", env={"RILLET_REDIS_URL": url})
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"rillet: error: Redis at {url} does not answer"), line


def test_serve_on_a_port_in_use_is_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = rillet("serve", "--port", str(port))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is in use" in line, line


def test_broker_down_is_one_line_per_problem(tmp_path):
    from streams.stack.embedded import free_port

    events = tmp_path / "e.jsonl"
    events.write_text('{"user_id": "u1", "amount": 1.0, "merchant": "m", "event_time": 1}\n')
    result = rillet("publish", "--view", "payments", "--file", str(events),
                    env={"RILLET_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("rillet: error: broker at 127.0.0.1:"), lines
    assert len(lines) <= 4, lines  # librdkafka's log: one line per distinct problem, not one per retry
    assert "Traceback" not in result.stderr


def test_registry_on_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = rillet("registry", "--port", str(port), "--data", str(tmp_path / "r.json"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [["serve", "--port", "99999"], ["registry", "--port", "-1"],
                                  ["up", "--broker-port", "70000"], ["worker", "--web-port", "x"]])
def test_a_port_out_of_range_is_a_usage_error(args):
    result = rillet(*args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "is not a port (0-65535)" in line, line


@pytest.mark.parametrize(("args", "needle"), [
    (["demo", "--users", "0"], "argument --users: '0' must be above 0"),
    (["demo", "--events", "-5"], "argument --events: '-5' must be above 0"),
    (["serve", "--workers", "0"], "argument --workers: '0' must be above 0"),
    (["replay", "--view", "payments", "--batch-size", "x"], "argument --batch-size: 'x' is not a number"),
])
def test_counts_must_be_positive(args, needle):
    result = rillet(*args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert needle in line, line


def test_historical_into_a_missing_folder_is_one_line(tmp_path):
    result = rillet("historical", "--entities", "examples/payments/entities.csv", "--select", "payments:*",
                    "--out", str(tmp_path / "no" / "such" / "x.parquet"))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "does not exist" in line and "Traceback" not in result.stderr


def test_a_taken_web_port_is_one_line_when_chosen_and_another_port_when_not(tmp_path):
    """A second worker on one host: RILLET_WEB_PORT set to a taken port is a one-line error naming it; with
    the default taken, the worker picks a free port and says which (streams.cli.run.free_web_port)."""
    import json
    import logging
    import socket

    from streams.cli.run import free_web_port
    from streams.settings import Settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = rillet("worker", env={"RILLET_WEB_PORT": str(port)})
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"RILLET_WEB_PORT={port}" in lines[0] and "taken" in lines[0]
        assert "Traceback" not in result.stderr

        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("rillet").addHandler(handler)
        try:
            chosen = free_web_port(Settings.from_env({}, web_port=port), explicit=False)
        finally:
            logging.getLogger("rillet").removeHandler(handler)
        assert chosen.web_port != port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", chosen.web_port))  # free indeed
        said = json.loads(records[-1].getMessage())
        assert said["event"] == "web_port_taken" and said["web_port"] == chosen.web_port


def test_a_request_input_that_does_not_convert_is_one_line(tmp_path):
    """`rillet get --service` converts request inputs to their declared types; a bad one is named, one line."""
    features = _features(tmp_path, GOOD_VIEW.format(entity="user_id", event_time="event_time", field="amount",
                                                    agg="sum") + """
from streams import FeatureService, derived

@derived(inputs=["payments:amount_sum_5m", "request:amount"])
def share(total, amount: float):
    return amount / total if total else None

svc = FeatureService("svc", ["payments:amount_sum_5m", share])
""")
    result = rillet("get", "--features", features, "--service", "svc", "--entity", "user_id=u1,amount=twelve")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "request input 'amount'" in lines[0] and "'twelve'" in lines[0], result.stderr
    result = rillet("get", "--features", features, "--service", "svc", "--entity", "user_id=u1,shop=x")
    assert result.returncode == 1 and "no field 'shop'" in result.stderr and "request inputs: amount" in result.stderr

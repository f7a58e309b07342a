"""`rillet serve` over real Redis: Feast-shaped answers equal the oracle; bad requests get a 4xx naming the problem."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from sinks.online.store import OnlineStore
from sinks.redis_client import connect_redis_async
from streams.kernel.engine import Event, ViewEngine
from streams.stack.embedded import free_port, port_open, wait_until
from tests.helpers import view_under_test
from tests.oracle import OEvent, close, value_at

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1h", features=[Feature("amount", "sum", Tumbling("5m")),
                                         Feature("amount", "count", Sliding("10m", "5m")),
                                         Feature("merchant", "last", Tumbling("5m"))])
"""
BASE = 1_767_225_600_000


def post(port: int, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/features/online", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def served(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "api")
    engine = ViewEngine(case.view)
    events = [OEvent("u1", BASE + 10_000, {"amount": 4.0, "merchant": "a"}, 0),
              OEvent("u1", BASE + 250_000, {"amount": 6.0, "merchant": "b"}, 1),
              OEvent("u2", BASE + 20_000, {"amount": None, "merchant": "c"}, 2)]
    states = {}
    for e in events:
        states[e.entity] = engine.apply(states.get(e.entity), Event(e.entity, e.t, e.values, 0, e.offset), e.t)
    from streams.kernel.records import StateWrite

    writes = [StateWrite(entity, engine.encode(s), s.latest_ms) for entity, s in states.items()]

    async def write() -> None:
        client = connect_redis_async(case.settings)
        await OnlineStore(case.view).write(client, writes)
        await client.aclose()

    asyncio.run(write())
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(case.features),
                             "--port", str(port)], env={**os.environ, **case.settings.to_env()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        yield case.name, case.view, events, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_values_statuses_and_timestamps(served):
    name, view, events, port = served
    t = BASE + 260_000
    features = [f"{name}:amount_sum_5m", f"{name}:amount_count_10m_every_5m", f"{name}:merchant_last_5m"]
    status, body = post(port, {"features": features, "entities": {"user_id": ["u1", "u2", "nobody"]}, "as_of": t})
    assert status == 200, body
    assert body["metadata"]["feature_names"] == ["user_id", *features]
    columns = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    assert columns["user_id"]["values"] == ["u1", "u2", "nobody"]
    for ref in features:
        feature = ref.split(":", 1)[1]
        for i, entity in enumerate(["u1", "u2"]):
            assert close(columns[ref]["values"][i], value_at(view, events, entity, t)[feature]), (ref, entity)
        assert columns[ref]["values"][2] is None and columns[ref]["statuses"][2] == "NOT_FOUND"
    assert columns[f"{name}:amount_sum_5m"]["statuses"][:2] == ["PRESENT", "PRESENT"]  # u2: empty window, sum 0
    _, rolled = post(port, {"features": features, "entities": {"user_id": ["u2"]}, "as_of": BASE + 300_000})
    rolled_columns = dict(zip(rolled["metadata"]["feature_names"], rolled["results"], strict=True))
    assert rolled_columns[f"{name}:merchant_last_5m"]["statuses"] == ["NULL_VALUE"]  # known, window now empty
    assert rolled_columns[f"{name}:amount_sum_5m"]["values"] == [0]
    assert columns[f"{name}:amount_sum_5m"]["event_timestamps"][0] == "2026-01-01T00:04:10.000Z"

    later = BASE + 250_000 + 3_600_001  # past the 1h ttl
    _, aged = post(port, {"features": features[:1], "entities": {"user_id": ["u1"]}, "as_of": later})
    assert aged["results"][1] == {"values": [None], "statuses": ["OUTSIDE_MAX_AGE"], "event_timestamps": [None]}


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 400, "not JSON"),
    ({"features": [], "entities": {"user_id": ["u1"]}}, 400, "'features'"),
    ({"features": ["{name}:amount_sum_5m"]}, 400, "'entities'"),
    ({"features": ["{name}:amount_sum_5m"], "entities": {"user_id": ["u1"], "x": []}}, 400, "differ in length"),
    ({"features": ["{name}:amount_sum_5m"], "entities": {"account": ["u1"]}}, 400, "'user_id'"),
    ({"features": ["{name}:nope"], "entities": {"user_id": ["u1"]}}, 404, "no feature 'nope'"),
    ({"features": ["ghost:amount_sum_5m"], "entities": {"user_id": ["u1"]}}, 404, "unknown view 'ghost'"),
    ({"features": ["{name}:amount_sum_5m"], "entities": {"user_id": ["u1"]}, "as_of": "yesterday"}, 400, "as_of"),
    ({"features": ["{name}:amount_sum_5m"], "entities": {"user_id": ["u1"]}, "as_of": BASE}, 422, "before"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(served, body, status, needle):
    name, _view, _events, port = served
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace("{name}", name))
    got, reply = post(port, body)
    assert got == status, reply
    assert needle in reply["message"]


def test_metrics_count_answered_requests(served):
    name, _view, _events, port = served
    post(port, {"features": [f"{name}:amount_sum_5m"], "entities": {"user_id": ["u1"]}})
    post(port, {"features": [f"{name}:nope"], "entities": {"user_id": ["u1"]}})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'rillet_serve_request_seconds_count{status="200"} 1.0' in text
    assert 'rillet_serve_request_seconds_count{status="404"} 1.0' in text


def test_openapi_document_describes_the_endpoint(served):
    _name, _view, _events, port = served
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as response:
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.")
    post_op = document["paths"]["/features/online"]["post"]
    assert {"200", "400", "404", "422"} <= set(post_op["responses"])


def _raw_post(port: int, data: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/features/online", data=data,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_hostile_requests_get_a_4xx_and_the_server_keeps_serving(served):
    """What an independent fuzz found as 500s: each is now a 4xx naming the problem."""
    name, _view, _events, port = served
    feature = f"{name}:amount_sum_5m"
    cases = [
        (json.dumps({"features": [feature], "entities": {"user_id": ["\ud800"]}}).encode(), "application/json",
         400, "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
        (b'{"features": []}', "application/json; charset=klingon", 415, "unknown charset 'klingon'"),
        (json.dumps({"features": [feature], "entities": {"user_id": [str(i) for i in range(10_001)]}}).encode(),
         "application/json", 400, "at most 10000"),
        (json.dumps({"features": [feature], "entities": {"user_id": [{"nested": 1}]}}).encode(), "application/json",
         400, "give a string or a number"),
    ]
    for data, content_type, status, needle in cases:
        got, reply = _raw_post(port, data, content_type)
        assert got == status and needle in reply["message"], (data[:60], got, reply)
    ok, body = post(port, {"features": [feature], "entities": {"user_id": []}})
    assert ok == 200 and body["metadata"]["feature_names"] == ["user_id", feature]  # zero rows keep the column


def test_serve_workers_share_the_port_and_stop_together(stack, tmp_path):
    """`rillet serve --workers 2`: two processes answer on one port (SO_REUSEPORT); stopping the first
    stops both."""
    case = view_under_test(stack, tmp_path, FEATURES, "workers")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(case.features),
                             "--port", str(port), "--workers", "2"], env={**os.environ, **case.settings.to_env()},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        pids = set()
        for _ in range(200):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                pids.add(json.loads(response.read())["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, pids
    finally:
        proc.terminate()
        proc.wait(10)
    wait_until(lambda: not port_open("127.0.0.1", port), timeout_s=15, what="every serve process to stop")
    assert "2 process(es)" in proc.stdout.read()

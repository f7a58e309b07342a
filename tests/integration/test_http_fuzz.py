"""Schemathesis against both HTTP servers' OpenAPI documents: positive and negative data, bounded.

Every answer must match the document (status, content type, body schema), no
request may get a 5xx, every 4xx must say what was wrong, and the server must
still answer afterwards. Both run as real processes: `rillet serve` over a
real Redis, and `rillet registry` with its state on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from streams.stack.embedded import free_port, port_open, wait_until
from tests.helpers import RegistryProcess, view_under_test

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("RILLET_FUZZ_EXAMPLES", "50"))  # per operation and mode; CI stays fast
FEATURES = """
from streams import Feature, FeatureView, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     features=[Feature("amount", "sum", Tumbling("5m")), Feature("merchant", "last", Tumbling("5m"))])
"""


def fuzz(url: str) -> Counter:
    """Every operation of the server's document, positive then negative data, EXAMPLES cases each;
    returns the statuses seen. (Schemathesis's pytest plugin does not run on pytest 9, so this drives
    its strategies with Hypothesis directly.)"""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                # a document cannot say "valid Avro" or "a defined feature": data it allows may still be refused
                response = case.call_and_validate(base_url=url, excluded_checks=[checks.positive_data_acceptance])
                seen[response.status_code] += 1
                assert response.status_code < 500, response.text
                if 400 <= response.status_code < 500 and response.content:
                    assert response.json().get("message"), f"a {response.status_code} must name the problem"

            try:
                run()
            except Unsatisfiable:  # no negative form exists (an operation with no inputs)
                assert mode is GenerationMode.NEGATIVE, operation.label
    return seen


def test_registry_answers_by_its_document(tmp_path):
    registry = RegistryProcess(tmp_path / "registry.json").start()
    try:
        seen = fuzz(registry.url)
        assert _answers(f"{registry.url}/subjects")  # still serving
    finally:
        registry.stop()
    print(f"registry: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= 100 and any(400 <= s < 500 for s in seen), seen


def test_serve_answers_by_its_document(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "fuzz")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(case.features),
                             "--port", str(port), "--max-entities", "50"], env={**os.environ, **case.settings.to_env()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        seen = fuzz(f"http://127.0.0.1:{port}")
        assert _answers(f"http://127.0.0.1:{port}/health")  # still serving
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"serve: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert 200 in seen and any(400 <= s < 500 for s in seen), seen


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def test_a_client_that_never_finishes_its_headers_is_cut_off(tmp_path):
    """Slowloris: headers trickling in forever must not hold a connection (both servers close idle and
    unfinished connections after 15 s; a body has 10 s more)."""
    import socket
    import time

    registry = RegistryProcess(tmp_path / "registry.json").start()
    try:
        with socket.create_connection(("127.0.0.1", registry.port)) as client:
            client.settimeout(1.0)
            started, closed = time.monotonic(), None
            for byte in b"POST /subjects/x/versions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                client.sendall(bytes([byte]))
                try:
                    if client.recv(100) == b"":
                        closed = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
        assert closed is not None and closed < 25, closed
        assert _answers(f"{registry.url}/subjects")
    finally:
        registry.stop()

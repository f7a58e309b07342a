"""The web console in a real browser: headless Chromium (Debian's package, driven by Playwright) opens
`rillet serve`'s page against a live stack, checks that the numbers shown equal the ones
`/console.json` returns, uses the lookup box and compares its values with the HTTP API's, and
saves a screenshot. The page must load with no request leaving this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from sinks.observe.served_log import ServedLog
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.stack.embedded import free_port, port_open, wait_until
from streams.timeutil import format_ms
from tests.helpers import view_under_test

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FEATURES = """
from streams import Feature, FeatureView, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="7d", grace="1m", freshness="30d", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m")),
                               Feature("amount", "count", Sliding("1h", "5m")),
                               Feature("merchant", "last", Sliding("1h", "5m"))])
"""


def get_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (make test installs Debian's chromium where it can)")
def test_the_console_shows_what_the_api_returns(stack, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    case = view_under_test(stack, tmp_path, FEATURES, "console", batch_size=100, batch_wait_ms=20)
    view = case.view
    settings = case.settings.with_(served_log_topic=f"served_{case.name}")
    now = int(time.time() * 1000)
    history = synthetic_payments(users=8, events=300, start_ms=now - 1_800_000, end_ms=now - 1000, seed=6)
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    port = free_port()
    env = {**os.environ, **settings.to_env()}
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(case.features),
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history)
            producer.flush()
            producer.send_many([{**history[0], "event_time": now - 7_200_000}])  # late
            producer.send_raw(b"u1", b"\x00\x00\x00")  # truncated
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        log = ServedLog(settings, rate=1.0)  # a few logged reads, and their skew report for the page
        reader = FeatureReader([view], connect_redis(settings), served_log=log)
        for user in sorted({e["user_id"] for e in history}):
            reader.get_online_features([f"{view.name}:*"], [{"user_id": user}])
        log.close()
        skew = subprocess.run([sys.executable, "-m", "streams.cli", "skew", "--features", str(case.features),
                               "--view", view.name], capture_output=True, text=True, timeout=120, env=env)
        assert skew.returncode == 0, skew.stderr
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        wait_until(lambda: len(get_json(f"{base}/console.json")["views"][0]["history"]) >= 2, timeout_s=90,
                   what="points of the workers' history for the charts", interval_s=1)
        api = get_json(f"{base}/console.json")["views"][0]
        status = api["status"]

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            started = time.perf_counter()
            page.goto(f"{base}/")
            load_s = time.perf_counter() - started
            section = page.locator(f"#view-{view.name}")

            def shown(field: str) -> str:
                return section.locator(f"[data-field={field}]").first.inner_text().strip()

            assert shown("version") == f"v{status['version']}"
            assert shown("workers") == str(status["workers"]) == "1"
            assert shown("lag") == f"{status['lag']:,}" == "0"
            assert shown("late") == str(status["late_1h"]) == "1"
            assert shown("dead_letters") == ", ".join(f"{k} {v}" for k, v in sorted(status["dead_letters_1h"].items()))
            assert shown("verdict") == status["verdict"] == "ok"
            assert shown("target") == "30d"
            assert f"{api['skew']['compared']:,} values compared" in shown("skew")
            assert section.locator("svg.chart").count() == 2 and section.locator("svg.chart polyline").count() >= 2
            assert "truncated" in section.inner_text() and "late" in section.inner_text()  # the latest dead letters

            user = history[-1]["user_id"]
            latest = max(e["event_time"] for e in history if e["user_id"] == user)
            page.select_option("select[name=view]", view.name)
            page.fill("input[name=entity]", user)
            page.fill("input[name=as_of]", format_ms(latest))
            page.click("button[type=submit]")
            page.wait_for_selector("#lookup-result")
            rows = page.locator("#lookup-result tr").all()[1:]
            shown_values = {r.locator("td").nth(0).inner_text(): (r.locator("td").nth(1).inner_text(),
                                                                  r.locator("td").nth(2).inner_text()) for r in rows}
            page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            browser.close()

        then = get_json(f"{base}/features/online", {"features": [f"{view.name}:*"], "entities": {"user_id": [user]},
                                                     "as_of": latest})
        names = then["metadata"]["feature_names"]
        for name, result in zip(names[1:], then["results"][1:], strict=True):
            value = result["values"][0]
            assert shown_values[name.split(":", 1)[1]][1] == (value if isinstance(value, str) else json.dumps(value))
        assert set(shown_values) == {n.split(":", 1)[1] for n in names[1:]}
        assert all(now_value != "" for now_value, _ in shown_values.values())
        assert load_s < 5, f"the console took {load_s:.1f} s to load"
        assert requested and all(url.startswith(base) for url in requested), requested  # nothing from elsewhere
        assert (tmp_path / "console.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(10)
        worker.stop()

"""Changing a feature safely, on the real broker and Redis: plan, candidate, diff, promote, rollback.

One worker runs the live v1 while reads are served; the features file changes one feature's window
(`spend`: 5m -> 10m) and adds one. `plan` names exactly that change. `replay --candidate` builds v2;
the running worker picks it up (it restarts itself in place) and keeps both versions current while
events arrive, so `view@v1` and `view@v2` each equal the contract's values for their own definition.
`diff` calls `spend` changed, the untouched feature equal, the new one added. `promote` switches
readers to v2 and keeps v1 current; `rollback` returns to v1, exact with the events that arrived after
the promotion. A reader running through both switches never sees a missing entity or a step back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.request
from types import SimpleNamespace

import pytest

from sinks.online.reads import FeatureReader
from sinks.online.versions import VersionRegistry
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli import main
from streams.cli.demo import synthetic_payments, worker_process
from streams.definitions.view import load_views
from streams.stack.embedded import free_port, port_open, wait_until
from tests.helpers import WITH_CLUSTER, view_under_test
from tests.oracle import OEvent, close, value_at

pytestmark = pytest.mark.integration

BEFORE = """
from streams import Feature, FeatureView, Session, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", grace="1h", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m"), name="spend"),
                               Feature("amount", "count", Sliding("30m", "5m"))])
"""
CHANGE = ('Feature("amount", "sum", Tumbling("5m"), name="spend")',
          'Feature("amount", "sum", Tumbling("10m"), name="spend"), Feature("amount", "max", Session("10m"))')
BASE = 1_767_225_600_000


def rillet(settings, *args):
    """A `rillet` command run in this process (its parser, settings from the environment, one-line errors, exit
    code): the worker and `rillet serve` run as processes; the commands here would each pay 1-2 s to start."""
    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    os.environ.update(settings.to_env())
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def last_json(done) -> dict:
    assert done.returncode in (0, 2), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_version_exact(settings, view, ref_view: str, history: list[dict]) -> None:
    """Every entity's values read through `ref_view` (`name`, `name@v1`, `name@candidate`) equal the oracle's
    for `view`'s definition over `history`, at the entity's latest event."""
    reader = FeatureReader([view], connect_redis(settings))
    events = [OEvent(e["user_id"], e["event_time"], {"amount": e["amount"]}, i) for i, e in enumerate(history)]
    for user in sorted({e["user_id"] for e in history}):
        latest = max(e["event_time"] for e in history if e["user_id"] == user)
        row = reader.get_online_features([f"{ref_view}:*"], [{"user_id": user}], as_of=latest).rows[0]
        for name, expected in value_at(view, events, user, latest).items():
            assert close(row[f"{view.name}:{name}"], expected), (ref_view, user, name, row, expected)


def assert_candidate_served(settings, features, view, users: list[str], at: int) -> None:
    """`view@candidate` over HTTP and in `rillet get` gives what the Python reader gives for `view@v2`."""
    name = view.name
    expected = FeatureReader([view], connect_redis(settings)).get_online_features(
        [f"{name}@v2:spend", f"{name}@v2:amount_max_session_10m"], [{"user_id": u} for u in users], as_of=at).to_dict()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(features),
                               "--port", str(port)], env={**os.environ, **settings.to_env()},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        body = {"features": [f"{name}@candidate:spend", f"{name}@candidate:amount_max_session_10m"],
                "entities": {"user_id": users}, "as_of": at}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/features/online", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(10)
    names = answer["metadata"]["feature_names"]
    assert answer["results"][names.index(f"{name}:spend")]["values"] == expected[f"{name}:spend"]
    got = rillet(settings, "get", "--features", str(features), "--view", f"{name}@candidate", "--entity", users[0],
                 "--as-of", str(at))
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["features"]["amount_max_session_10m"] == expected[f"{name}:amount_max_session_10m"][0]


@WITH_CLUSTER
def test_plan_candidate_diff_promote_rollback(stack, tmp_path):
    case = view_under_test(stack, tmp_path, BEFORE, "chg")
    v1_view, settings, name = case.view, case.settings, case.view.name
    new_features = tmp_path / "features_v2.py"
    new_features.write_text(case.features.read_text().replace(*CHANGE))
    [v2_view] = load_views(new_features)
    history = synthetic_payments(users=20, events=2400, start_ms=BASE, end_ms=BASE + 3 * 3_600_000, seed=11)
    users = sorted({e["user_id"] for e in history})
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    try:
        with EventProducer(settings, v1_view) as producer:
            producer.send_many(history[:1200])
        wait_caught_up(settings, settings.worker_group, name, producer.report.heads, timeout_s=120,
                       alive=worker.alive)

        # plan: the deployed file has nothing to do; the new one names exactly the change
        same = rillet(settings, "plan", "--features", str(case.features), "--json")
        assert same.returncode == 0, same.stderr
        assert json.loads(same.stdout)["status"] == "unchanged"
        planned = rillet(settings, "plan", "--features", str(new_features), "--json")
        assert planned.returncode == 2, planned.stderr
        plan = json.loads(planned.stdout)
        assert plan["status"] == "changed" and plan["schema"]["compatible"]
        assert plan["changes"]["added"] == ["amount_max_session_10m"] and plan["changes"]["removed"] == []
        assert [r["feature"] for r in plan["changes"]["redefined"]] == ["spend"]
        assert plan["changes"]["settings"] == [] and plan["unchanged_features"] == ["amount_count_30m_every_5m"]
        assert plan["replay"]["records"] == 1200 and plan["action"].endswith("--candidate")
        schema = json.loads(v1_view.schema.read_text())  # a field without a default cannot read the topic's events
        schema["fields"].append({"name": "channel", "type": "string"})
        (tmp_path / "breaking.avsc").write_text(json.dumps(schema))
        breaking = tmp_path / "features_breaking.py"
        breaking.write_text(case.features.read_text().replace(str(v1_view.schema), str(tmp_path / "breaking.avsc")))
        refused = rillet(settings, "plan", "--features", str(breaking), "--json")
        assert refused.returncode == 1, refused.stderr
        refusal = json.loads(refused.stdout)
        assert refusal["status"] == "refused" and not refusal["schema"]["compatible"]
        assert "channel" in refusal["schema"]["problems"][0]

        # a candidate: built, not switched; the running worker restarts itself to keep it current too
        built = last_json(rillet(settings, "replay", "--features", str(new_features), "--view", name, "--candidate"))
        assert built["candidate"] and not built["switched"] and built["version"] == 2
        registry = VersionRegistry(connect_redis(settings))
        assert {v.version: v.state for v in registry.list(name)} == {1: "active", 2: "candidate"}
        with EventProducer(settings, v1_view) as producer:
            producer.send_many(history[1200:1800])
        group = f"{settings.worker_group}.{name}-v2"  # the group of workers keeping v1 and v2 current
        wait_caught_up(settings, group, name, producer.report.heads, timeout_s=120, alive=worker.alive)
        wait_until(lambda: registry.get(name, 2).events == 1800 and registry.get(name, 1).events == 1800,
                   timeout_s=30, what="both versions to hold every event")
        assert_version_exact(settings, v1_view, f"{name}@v1", history[:1800])
        assert_version_exact(settings, v2_view, f"{name}@v2", history[:1800])
        assert_version_exact(settings, v2_view, f"{name}@candidate", history[:1800])
        assert_version_exact(settings, v1_view, name, history[:1800])  # unpinned reads: still v1
        assert_candidate_served(settings, new_features, v2_view, users, max(e["event_time"] for e in history[:1800]))

        # diff: the redefined feature changed, the untouched one equal (exactly), the new one added
        # the history lies in the past (past its ttl now): compare after its last event, in the second half of a
        # 10-minute window, where the 5- and 10-minute sums differ
        end = max(e["event_time"] for e in history[:1800])
        at = end if end % 600_000 >= 300_000 else end - end % 600_000 + 300_000
        diffed = rillet(settings, "diff", "--features", str(new_features), "--view", name, "--all",
                        "--as-of", str(at))
        assert diffed.returncode == 0, diffed.stderr
        summary = json.loads(diffed.stdout.strip().splitlines()[-1])
        assert (summary["from"], summary["to"], summary["entities"], summary["skipped"]) == (1, 2, len(users), 0)
        assert summary["changed"] == ["spend"]
        assert summary["added"] == ["amount_max_session_10m", "session_10m_start", "session_10m_end",
                                    "session_10m_active"]  # a session feature brings its session's columns
        assert summary["unexpected"] == [] and summary["removed"] == []
        assert "amount_count_30m_every_5m: equal" in diffed.stdout
        rows = tmp_path / "training.csv"  # offline: both versions joined at each row of a training set
        rows.write_text("user_id,event_timestamp\n" + "".join(f"{u},{at - k * 97_000}\n" for u in users
                                                              for k in range(3)))
        offline = rillet(settings, "diff", "--features", str(new_features), "--view", name, "--entities", str(rows))
        assert offline.returncode == 0, offline.stderr
        summary = json.loads(offline.stdout.strip().splitlines()[-1])
        assert (summary["where"], summary["entities"], summary["changed"]) == ("offline", 3 * len(users), ["spend"])
        assert summary["unexpected"] == []

        # a reader runs through the promotion and the rollback: each read one version, never a missing entity
        reader = FeatureReader([v2_view], connect_redis(settings))
        seen, missing, stop = [], [], threading.Event()

        def read_loop():
            while not stop.is_set():
                plan = reader.plan([f"{name}:spend"], [{"user_id": u} for u in users])
                [(version, blobs)] = reader.fetch(plan)
                seen.append(version)
                missing.extend(u for u, b in zip(users, blobs, strict=True) if b is None)
                stop.wait(0.005)  # paced: a spinning reader took a core from the worker and the other tests

        thread = threading.Thread(target=read_loop, daemon=True)
        thread.start()
        try:
            promoted = last_json(rillet(settings, "promote", "--features", str(new_features), "--view", name,
                                        "--keep-previous", "1h"))
            assert (promoted["active"], promoted["previous"], promoted["previous_state"]) == (2, 1, "previous")
            with EventProducer(settings, v1_view) as producer:
                producer.send_many(history[1800:])
            wait_caught_up(settings, group, name, producer.report.heads, timeout_s=120, alive=worker.alive)
            wait_until(lambda: registry.get(name, 1).events == len(history), timeout_s=30,
                       what="the kept version to hold every event")
            assert_version_exact(settings, v2_view, name, history)  # promoted: unpinned reads are v2

            def kept_in_status() -> list:
                status = rillet(settings, "status", "--features", str(new_features), "--json")
                return [(k["version"], k["role"], k["lag"]) for k in json.loads(status.stdout)["kept"]]

            wait_until(lambda: kept_in_status() == [(1, "previous", 0)], timeout_s=30,
                       what="status to show v1 kept for rollback, caught up")
            assert_version_exact(settings, v1_view, f"{name}@previous", history)
            rolled = last_json(rillet(settings, "rollback", "--features", str(new_features), "--view", name))
            assert (rolled["active"], rolled["rolled_back"]) == (1, 2)
            wait_until(lambda: seen[-1] == 1, timeout_s=30, what="the reader to read after the rollback")
        finally:
            stop.set()
            thread.join(10)
        assert not missing
        assert [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]] == [1, 2, 1]  # two clean switches
        # rolled back: v1 again, exact with the events that arrived after the promotion; v2 still current
        assert_version_exact(settings, v1_view, name, history)
        assert_version_exact(settings, v2_view, f"{name}@candidate", history)
        assert worker.alive()  # promotion and rollback moved roles only: the worker went on
        assert {v.version: v.state for v in registry.list(name)} == {1: "active", 2: "candidate"}
        gc = rillet(settings, "versions", "gc", "--features", str(new_features), "--view", name, "--grace", "0")
        assert json.loads(gc.stdout)["removed"] == []  # neither the active version nor a candidate
        listed = rillet(settings, "versions", "--features", str(new_features), "--view", name)
        assert [(json.loads(line)["version"], json.loads(line)["state"]) for line in listed.stdout.splitlines()] \
            == [(1, "active"), (2, "candidate")]

        # retiring the candidate restarts the worker in place, keeping v1 only
        retired = rillet(settings, "versions", "retire", "--features", str(new_features), "--view", name,
                         "--version", "2")
        assert retired.returncode == 0, retired.stderr
        wait_until(lambda: worker.log_path.read_text().count('"event": "versions_changed"') == 2,
                   timeout_s=30, what="the worker to restart without v2")
        assert worker.alive()
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert log.count('"event": "versions_changed"') == 2, log[-3000:]

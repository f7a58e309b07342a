"""The README's Python examples run as written: its definition blocks load as one features file, a replay
builds every view from published events, and its reading block runs against the real stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import SCHEMA_DIR
from streams.broker.producer import EventProducer
from streams.definitions.services import load_definitions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_every_python_block_of_the_readme_runs(stack, tmp_path, monkeypatch):
    defining = [b for b in BLOCKS if "FeatureView(" in b or "FeatureService(" in b]
    reading = [b for b in BLOCKS if "get_online_features" in b or "get_historical_features" in b]
    assert len(defining) >= 2 and reading and len(defining) + len(reading) == len(BLOCKS)
    folder = tmp_path / "project" / "examples" / "payments"  # where the first block says it lives
    folder.mkdir(parents=True)
    (tmp_path / "project" / "schemas").mkdir()
    for place in (folder / "payment.avsc", tmp_path / "project" / "schemas" / "payment.avsc"):  # as the paths say
        shutil.copy(SCHEMA_DIR / "payment.avsc", place)
    (folder / "features.py").write_text("\n".join(defining))
    definitions = load_definitions(folder / "features.py")
    assert {v.name for v in definitions.views} == {"payments", "user_merchant"} and "fraud_v3" in definitions.services

    settings = stack.settings.with_(offline_path=str(tmp_path / "offline"), state_dir=str(tmp_path / "state"),
                                    worker_group=f"g-readme-{os.getpid()}")
    now = int(time.time() * 1000)
    events = [{"user_id": f"u{i % 2 + 1}", "merchant": "m7", "amount": 10.0 + i, "event_time": now - 60_000 * (20 - i)}
              for i in range(20)]
    with EventProducer(settings, definitions.views[0]) as producer:
        producer.send_many(events)
    env = {**os.environ, **settings.to_env()}
    for view in definitions.views:  # builds v1 of each, online and offline, from the topic
        done = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "--features", str(folder / "features.py"),
                               "--view", view.name], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr

    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(folder)
    for block in reading:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)
    [row] = scope["pinned"]
    assert row["payments:amount_sum_5m"] is not None
    assert scope["rows"][0]["amount_over_p99"] is not None
    assert json.loads(scope["training"].schema.metadata[b"rillet.versions"]) == {"payments": 1, "user_merchant": 1}

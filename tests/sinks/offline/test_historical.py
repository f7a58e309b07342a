"""`rillet historical` and `get_historical_features` over a real offline store on disk.

The store is written by the worker's own `OfflineStore` (files, not mocks);
the join's values are checked against the oracle, its row order against the
input's, and bad input against one-line errors.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sinks.offline.join import OfflineReader
from sinks.offline.store import OfflineStore
from streams.definitions.view import load_views
from streams.errors import ConfigError, UnknownFeatureError
from streams.kernel.engine import Event
from streams.kernel.records import EventRows
from tests.oracle import OEvent, close, value_at

FEATURES = """
from streams import Feature, FeatureView, Lifetime, Session, Sliding, Tumbling
payments = FeatureView(
    name="payments", topic="payments", schema="{schema}", entity="user_id", event_time="event_time", ttl="2h",
    features=[Feature("amount", "sum", Tumbling("5m")), Feature("amount", "max", Sliding("1h", "10m")),
              Feature("merchant", "last", Session("15m")), Feature("merchant", "count_distinct", Sliding("1h", "10m")),
              Feature("amount", "approx_percentile(0.9)", Sliding("1h", "10m")),
              Feature("merchant", "top_k(2)", Tumbling("5m")), Feature("amount", "last_k(2)", Session("15m")),
              Feature("amount", "decayed_sum(30m)", Lifetime()), Feature(None, "age", Lifetime())],
)
"""
BASE = 1_767_225_600_000


@pytest.fixture
def store(tmp_path):
    from schemas import SCHEMA_DIR

    definitions = tmp_path / "features.py"
    definitions.write_text(FEATURES.format(schema=SCHEMA_DIR / "payment.avsc"))
    [view] = load_views(definitions)
    rng = random.Random(8)
    events = [OEvent(f"u{rng.randrange(5)}", BASE + rng.randrange(0, 4 * 3_600_000),
                     {"amount": rng.choice([None, rng.uniform(1, 100)]), "merchant": f"m{rng.randrange(4)}"}, i)
              for i in range(400)]
    writer = OfflineStore(tmp_path / "offline", view)
    for lo in range(0, len(events), 150):  # several batches, several files
        chunk = events[lo:lo + 150]
        writer.write(EventRows.of([Event(e.entity, e.t, e.values, 0, e.offset) for e in chunk], [BASE] * len(chunk),
                                  ["amount", "merchant"]))
    return view, definitions, events, tmp_path


def entity_rows(events, n=300):
    rng = random.Random(2)
    users = [*sorted({e.entity for e in events}), "stranger"]
    return [(rng.choice(users), BASE + rng.randrange(-600_000, 7 * 3_600_000)) for _ in range(n)]


def test_join_equals_oracle_in_the_callers_row_order(store):
    view, _, events, root = store
    rows = entity_rows(events)
    entity_df = pa.table({"user_id": [u for u, _ in rows], "event_timestamp": [t for _, t in rows]})  # epoch ms
    seen = []
    joined = OfflineReader([view], root / "offline").get_historical_features(
        entity_df, ["payments:*"], full_feature_names=True, chunk_rows=64, on_progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (len(rows), len(rows)) and len(seen) == 5  # progress per chunk
    assert joined.column("user_id").to_pylist() == [u for u, _ in rows]
    for i, (user, t) in enumerate(rows):
        for name, expected in value_at(view, events, user, t).items():
            got = joined.column(f"payments__{name}")[i].as_py()
            got = int(got.timestamp() * 1000) if hasattr(got, "timestamp") else got
            assert close(got, expected), (user, t, name, got, expected)


def test_the_join_in_threads_gives_the_same_bits(store):
    """Chunks of rows evaluated in several threads at once, over one shared log: the same table, bit for bit."""
    view, _, events, root = store
    rows = entity_rows(events, n=500)
    entity_df = pa.table({"user_id": [u for u, _ in rows], "event_timestamp": [t for _, t in rows]})
    reader = OfflineReader([view], root / "offline")
    one = reader.get_historical_features(entity_df, ["payments:*"], chunk_rows=40, threads=1)
    four = OfflineReader([view], root / "offline").get_historical_features(entity_df, ["payments:*"],
                                                                          chunk_rows=40, threads=4)
    assert one.equals(four) and one.num_rows == len(rows)


def test_cli_writes_parquet_from_csv(store):
    view, definitions, events, root = store
    rows = entity_rows(events, 50)
    entities = root / "entities.csv"
    from datetime import UTC, datetime, timedelta

    def written(i: int, t: int) -> str:  # the file mixes epoch ms, UTC and offset ISO-8601 times
        moment = datetime.fromtimestamp(t / 1000, UTC)
        return [str(t), moment.isoformat().replace("+00:00", "Z"),
                moment.astimezone(timezone(timedelta(hours=2))).isoformat()][i % 3]

    from datetime import timezone

    lines = ["user_id,event_timestamp", *(f"{u},{written(i, t)}" for i, (u, t) in enumerate(rows))]
    entities.write_text("\n".join(lines) + "\n")
    out = root / "training.parquet"
    result = _rillet(root, "historical", "--features", str(definitions), "--entities", str(entities),
                     "--select", "payments:amount_sum_5m,payments:merchant_last_session_15m", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "50 rows x 2 features" in result.stderr and "[historical]" in result.stderr
    table = pq.read_table(out)
    assert table.column_names == ["user_id", "event_timestamp", "amount_sum_5m", "merchant_last_session_15m"]
    for i, (user, t) in enumerate(rows):
        want = value_at(view, events, user, t)
        assert close(table.column("amount_sum_5m")[i].as_py(), want["amount_sum_5m"])
        assert table.column("merchant_last_session_15m")[i].as_py() == want["merchant_last_session_15m"]


@pytest.mark.parametrize(("table", "features", "error", "needle"), [
    (pa.table({"user_id": ["u1"]}), ["payments:*"], UnknownFeatureError, "no 'event_timestamp' column"),
    (pa.table({"who": ["u1"], "event_timestamp": [BASE]}), ["payments:*"], UnknownFeatureError, "no 'user_id'"),
    (pa.table({"user_id": ["u1"], "event_timestamp": ["noon"]}), ["payments:*"], ConfigError, "epoch milliseconds"),
    (pa.table({"user_id": ["u1"], "event_timestamp": pa.array([None], pa.int64())}), ["payments:*"], ConfigError,
     "null"),
    (pa.table({"user_id": ["u1"], "event_timestamp": [BASE]}), ["payments:nope"], UnknownFeatureError, "no feature"),
    ({"user_id": ["u1"]}, ["payments:*"], ConfigError, "pyarrow Table or a pandas DataFrame"),
])
def test_bad_entity_tables_name_the_problem(store, table, features, error, needle):
    view, _, _, root = store
    with pytest.raises(error, match=needle):
        OfflineReader([view], root / "offline").get_historical_features(table, features)


def test_cli_bad_arguments_are_one_line(store):
    _, definitions, _, root = store
    naive = root / "naive.csv"
    naive.write_text("user_id,event_timestamp\nu1,1767225600000\nu1,2026-01-01T00:00:00\n")
    for args, needle in [
        (["--entities", str(root / "none.parquet"), "--out", str(root / "o.parquet")], "does not exist"),
        (["--entities", str(definitions), "--out", str(root / "o.parquet")], "use a .parquet or .csv"),
        (["--entities", str(definitions), "--out", str(root / "o.csv")], "write a .parquet file"),
        (["--entities", str(naive), "--out", str(root / "o.parquet")],
         f"{naive}:3: event_timestamp '2026-01-01T00:00:00' is neither epoch milliseconds nor an ISO-8601 time "
         "with a timezone"),
    ]:
        result = _rillet(root, "historical", "--features", str(definitions), "--select", "payments:*", *args)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()] and needle in result.stderr


def _rillet(root, *args):
    import os

    env = dict(os.environ, RILLET_OFFLINE_PATH=str(root / "offline"))
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_an_empty_store_gives_typed_nulls(tmp_path):
    """Nothing processed yet (or only unknown entities): every feature is null, in its own type."""
    from streams.definitions.view import load_views

    [view] = load_views(Path(__file__).resolve().parents[3] / "examples" / "payments" / "features.py")
    table = pa.table({"user_id": ["u1", "u2"], "event_timestamp": [BASE, BASE + 1]})
    joined = OfflineReader([view], tmp_path / "offline").get_historical_features(table, ["payments:*"])
    assert joined.num_rows == 2
    assert all(joined.column(name).null_count == 2 for name in joined.column_names[2:])
    assert joined.schema.field("merchant_last_1h_every_5m").type == pa.string()

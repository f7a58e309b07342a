"""The point-in-time join on a Dask cluster equals the in-process join: same rows, values and order.

The cluster is real: a `distributed.LocalCluster` of two worker processes, so every
task's arguments and results cross a process boundary as they would between machines.
The event log is spread over four source partitions and several files per partition,
as workers write it, and the entity rows hold unknown entities and times before,
between and after events. Amounts are in cents, whose sums are not associative in doubles:
the order in which a range is added shows in the last bit.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from sinks.offline.dask_join import entity_partitions
from sinks.offline.join import OfflineReader
from sinks.offline.store import OfflineStore
from streams.definitions.view import load_views
from streams.kernel.engine import Event
from streams.kernel.records import EventRows
from tests.sinks.offline.test_historical import BASE, FEATURES, _rillet

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
            distributed.Client(local) as client:
        yield client


@pytest.fixture
def spread_store(tmp_path):
    from schemas import SCHEMA_DIR

    definitions = tmp_path / "features.py"
    long_sums = 'Feature(None, "age", Lifetime()), Feature("amount", "sum", Lifetime()), ' \
                'Feature("amount", "mean", Sliding("1h", "10m"))]'  # ranges long enough for NumPy's pairwise order
    definitions.write_text(FEATURES.replace('Feature(None, "age", Lifetime())]', long_sums)
                           .format(schema=SCHEMA_DIR / "payment.avsc"))
    [view] = load_views(definitions)
    rng = random.Random(31)
    users = [f"u{i}" for i in range(40)]
    events = [Event(u, BASE + rng.randrange(0, 4 * 3_600_000),
                    {"amount": rng.choice([None, round(rng.uniform(-5, 400), 2), float(rng.randrange(5))]),
                     "merchant": f"m{rng.randrange(6)}"}, hash(u) % 4, i)
              for i, u in enumerate(rng.choice(users) for _ in range(3000))]
    writer = OfflineStore(tmp_path / "offline", view)
    for lo in range(0, len(events), 400):  # several files per partition
        chunk = events[lo:lo + 400]
        writer.write(EventRows.of(chunk, [BASE] * len(chunk), ["amount", "merchant"]))
    rows_rng = random.Random(5)
    rows = [(rows_rng.choice([*users, "stranger"]), BASE + rows_rng.randrange(-600_000, 6 * 3_600_000))
            for _ in range(2000)]
    entity_df = pa.table({"user_id": [u for u, _ in rows], "event_timestamp": [t for _, t in rows]})
    return view, definitions, entity_df, tmp_path


def test_dask_join_equals_the_in_process_join(spread_store, dask_client):
    view, _, entity_df, root = spread_store
    reader = OfflineReader([view], root / "offline")
    here = reader.get_historical_features(entity_df, ["payments:*"], full_feature_names=True)
    seen = []
    there = reader.get_historical_features(entity_df, ["payments:*"], full_feature_names=True, cluster=dask_client,
                                           partitions=5, on_progress=lambda done, total: seen.append(done))
    assert there.schema == here.schema
    assert there.equals(here)  # same rows, same order, same bits
    assert seen[-1] == entity_df.num_rows and len(seen) >= 2  # progress as partitions finish


def test_entity_partitions_are_the_same_in_every_process(dask_client):
    keys = pa.array([f"user-{i}" for i in range(500)] + [None])
    here = entity_partitions(keys, 7)
    there = dask_client.submit(entity_partitions, keys, 7).result()
    assert (here == there).all() and set(here.tolist()) == set(range(7))


def test_cli_joins_on_a_local_dask_cluster(spread_store):
    _, definitions, entity_df, root = spread_store
    import pyarrow.parquet as pq

    entities = root / "entities.parquet"
    pq.write_table(entity_df, entities)
    outs = {}
    for label, extra in (("here", []), ("dask", ["--workers", "2"])):
        outs[label] = root / f"{label}.parquet"
        result = _rillet(root, "historical", "--features", str(definitions), "--entities", str(entities),
                         "--select", "payments:*", "--out", str(outs[label]), *extra)
        assert result.returncode == 0, result.stderr
        assert " INFO " not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert pq.read_table(outs["dask"]).equals(pq.read_table(outs["here"]))


def test_cli_names_a_dask_scheduler_that_does_not_answer(spread_store):
    _, definitions, entity_df, root = spread_store
    import pyarrow.parquet as pq

    entities = root / "entities.parquet"
    pq.write_table(entity_df, entities)
    result = _rillet(root, "historical", "--features", str(definitions), "--entities", str(entities),
                     "--select", "payments:*", "--out", str(root / "x.parquet"), "--dask", "tcp://127.0.0.1:9")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "no Dask scheduler answers at tcp://127.0.0.1:9" in result.stderr

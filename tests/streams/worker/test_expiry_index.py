"""The expiry index names exactly the states wholly below a partition's cutoff, at their latest write."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.expiry_index import ExpiryIndex

KEYS = st.sampled_from([f"e{i}".encode() for i in range(12)])
WRITES = st.lists(st.tuples(KEYS, st.integers(0, 2), st.integers(-5_000, 50_000), st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(WRITES, st.integers(1, 5_000), st.lists(st.integers(-10_000, 60_000), min_size=3, max_size=3))
def test_due_takes_the_states_wholly_below_the_cutoff(writes, bucket_ms, cutoffs) -> None:
    table, since, in_table, noted = ExpiryIndex(bucket_ms), ExpiryIndex(bucket_ms), {}, {}
    for key, partition, latest_ms, from_table in writes:
        if from_table:  # the table as a thread reads it after a rebalance
            table.note(key, partition, latest_ms)
            in_table[key] = (partition, latest_ms)
        else:  # what batches note meanwhile: newer, so it wins
            since.note(key, partition, latest_ms)
            noted[key] = (partition, latest_ms)
    index, latest = table.take_newer(since), {**in_table, **noted}
    assert index.built and not since.built
    assert len(index) == len(latest)
    due = index.due(lambda partition: cutoffs[partition])
    taken = {key for key, _ in due}
    assert len(taken) == len(due)
    for key, (partition, latest_ms) in latest.items():
        cutoff = cutoffs[partition]
        whole = (cutoff // index.bucket_ms) * index.bucket_ms  # the first bucket's start that is not wholly below
        if key in taken:
            assert latest_ms < cutoff and (key, partition) in due
        else:
            assert latest_ms >= whole
    assert len(index) == len(latest) - len(taken)
    assert index.due(lambda partition: cutoffs[partition]) == []  # taken out: a second sweep finds nothing new


def test_a_partition_without_a_watermark_keeps_everything_and_a_rewrite_moves_the_state() -> None:
    index = ExpiryIndex(1_000)
    index.note(b"a", 0, 10)
    index.note(b"b", 1, 10)
    assert index.due(lambda partition: None) == []
    assert index.due(lambda partition: 5_000 if partition == 0 else None) == [(b"a", 0)]
    index.note(b"a", 0, 10)
    index.note(b"a", 0, 7_000)  # written again: moves to its new bucket
    assert index.due(lambda partition: 5_000 if partition == 0 else None) == []
    assert len(index) == 2

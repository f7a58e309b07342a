"""Recovery writes a changelog fetch straight from the broker's records: the table must end as Faust's
record-by-record recovery leaves it, in both stores (a tombstone deletes, a re-delivered record is skipped)."""

from __future__ import annotations

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.worker.batch_transport import apply_changelog_records, unread

TOPIC = "g-view-v1-state-changelog"


def _record(partition: int, offset: int, key: bytes, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(topic=TOPIC, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
                          key=key, value=value, checksum=None, serialized_key_size=len(key),
                          serialized_value_size=len(value or b""), headers=())


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_fetch_is_applied_as_faust_applies_it_record_by_record(tmp_path, store):
    app = faust.App("changelog-recovery", store=store, datadir=str(tmp_path), autodiscover=False)
    table = app.Table("view-v1-state", partitions=2, key_type=bytes, value_type=bytes)
    recovery = app.tables.recovery
    tp = TP(TOPIC, 1)
    recovery.active_tps.add(tp)
    recovery.tp_to_table[tp] = table
    first = [_record(1, 0, b"a", b"1"), _record(1, 1, b"b", b"2")]
    again = [_record(1, 1, b"b", b"stale"), _record(1, 2, b"a", None), _record(1, 3, b"c", b"3")]

    assert apply_changelog_records(recovery, tp, first) == 2
    assert apply_changelog_records(recovery, tp, again) == 2  # offset 1 was read already: skipped
    assert apply_changelog_records(recovery, tp, again) == 0

    assert recovery.active_offsets[tp] == 3
    assert {key: table.data.get(key) for key in (b"a", b"b", b"c")} == {b"a": None, b"b": b"2", b"c": b"3"}
    if store == "rocksdb://":
        assert table.data.persisted_offset(tp) == 3  # a restart on this machine reads on from here


def test_unread_drops_what_the_consumer_has_read_already():
    fetched = [_record(0, offset, b"k", b"v") for offset in range(5, 10)]
    assert unread(fetched, None) is fetched
    assert unread(fetched, 5) is fetched
    assert [record.offset for record in unread(fetched, 8)] == [8, 9]
    assert unread(fetched, 12) == []

"""Faust's livelock check hears that a view partition read to its head is alive (streams.worker.app)."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

from streams.kernel.watermark import Watermarks
from streams.worker.app import caught_up_is_alive

TP = namedtuple("TP", "topic partition")


def _reader(last: dict[int, int]) -> SimpleNamespace:
    marks = Watermarks()
    for partition, offset in last.items():
        marks.mark(partition, offset)
    return SimpleNamespace(watermarks=marks)


def test_only_partitions_every_view_has_read_to_the_head_are_marked() -> None:
    heads = {TP("pay", 0): 10, TP("pay", 1): 10, TP("pay", 2): 0, TP("other", 0): 5}
    by_topic = {"pay": [_reader({0: 9, 1: 9}), _reader({0: 9, 1: 4})]}  # the second view is behind on 1
    inbound = {TP("pay", 0): 1.0, TP("pay", 1): 1.0}
    marked = caught_up_is_alive(inbound, list(heads), heads.get, by_topic, now=50.0)
    assert marked == [TP("pay", 0), TP("pay", 2)]  # a partition never written to is caught up too
    assert inbound == {TP("pay", 0): 50.0, TP("pay", 1): 1.0, TP("pay", 2): 50.0}  # behind: left to the check
    assert caught_up_is_alive(None, list(heads), heads.get, by_topic, now=60.0) == []


def test_recovery_fetch_check_only_where_records_remain() -> None:
    from streams.worker.batch_transport import recovery_fetch_expected

    assert not recovery_fetch_expected(0)  # a standby copy already at the changelog's head
    assert not recovery_fetch_expected(None)
    assert recovery_fetch_expected(5)

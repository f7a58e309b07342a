"""The collector policy: what a batch leaves alive is frozen without a walk, and the hourly pass unfreezes and
collects everything, so a cycle that died frozen is freed within the hour."""

from __future__ import annotations

import gc
import weakref

from streams.kernel import collector


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_without_a_collection_and_the_hourly_pass_walks_them_again(monkeypatch) -> None:
    was_enabled = gc.isenabled()
    gc.disable()  # as inside a batch: no automatic collection may take the cycle below
    try:
        kept = [[i] for i in range(1000)]  # noqa: F841 - long-lived, as decoded states are
        assert collector.freeze_young() == 0
        assert gc.get_freeze_count() >= 1000
        alive = weakref.ref(_Cycle())
        assert collector.freeze_young() == 0  # no collection: the dead cycle is frozen with the rest
        assert alive() is not None
        monkeypatch.setattr(collector, "_last_full", collector._last_full - collector.FULL_COLLECTION_EVERY_S)
        assert collector.freeze_young() > 0  # the hourly pass: everything is walked once, then frozen again
        assert alive() is None
        assert gc.get_freeze_count() >= 1000
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def test_the_hourly_pass_frees_a_cycle_that_died_frozen(monkeypatch) -> None:
    try:
        cycle = _Cycle()
        alive = weakref.ref(cycle)
        collector.freeze_young()
        del cycle  # frozen while alive, then dead: only a pass over frozen objects frees it
        collector.freeze_young()
        assert alive() is not None
        monkeypatch.setattr(collector, "_last_full", collector._last_full - collector.FULL_COLLECTION_EVERY_S)
        collector.freeze_young()
        assert alive() is None
    finally:
        gc.unfreeze()

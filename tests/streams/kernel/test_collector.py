"""The collector policy: survivors of a batch's collection are frozen, cycles still die, and the hourly pass
unfreezes."""

from __future__ import annotations

import gc
import weakref

from streams.kernel import collector


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_a_cycle_made_after_is_still_collected(monkeypatch) -> None:
    was_enabled = gc.isenabled()
    try:
        kept = [[i] for i in range(1000)]  # noqa: F841 - long-lived, as decoded states are
        collector.collect_and_freeze()
        frozen = gc.get_freeze_count()
        assert frozen >= 1000
        alive = weakref.ref(_Cycle())
        collector.collect_and_freeze()
        assert alive() is None  # a cycle made after the freeze is found
        monkeypatch.setattr(collector, "_last_full", collector._last_full - collector.FULL_COLLECTION_EVERY_S)
        collector.collect_and_freeze()  # the hourly pass: everything is walked once (unfrozen, then frozen again)
        assert collector._last_full > 0 and gc.get_freeze_count() >= 1000
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def test_the_hourly_pass_frees_a_cycle_that_died_frozen(monkeypatch) -> None:
    try:
        cycle = _Cycle()
        alive = weakref.ref(cycle)
        collector.collect_and_freeze()
        del cycle  # frozen while alive, then dead: only a pass over frozen objects frees it
        collector.collect_and_freeze()
        assert alive() is not None
        monkeypatch.setattr(collector, "_last_full", collector._last_full - collector.FULL_COLLECTION_EVERY_S)
        collector.collect_and_freeze()
        assert alive() is None
    finally:
        gc.unfreeze()

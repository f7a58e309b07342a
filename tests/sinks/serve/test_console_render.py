"""The console's rendering, pure: charts on a time axis with gaps as gaps, ISO times, skew examples."""

from __future__ import annotations

import re

import pytest

from sinks.serve.console import HISTORY_STEP_MS, HOUR_MS, _chart, _skew, _time
from streams.timeutil import iso_to_ms

NOW = 1_767_225_600_000


def xs(svg: str) -> list[list[float]]:
    return [[float(p.split(",")[0]) for p in line.split()] for line in re.findall(r'points="([^"]*)"', svg)]


def test_points_sit_at_their_time_and_an_outage_is_a_gap():
    # 37 seconds of data at the end of the hour fill the last 1% of the width, not all of it
    recent = [{"at_ms": NOW - 40_000 + i * HISTORY_STEP_MS, "lag": i} for i in range(4)]
    [line] = xs(_chart(recent, "lag", NOW, width=360))
    assert line[0] == pytest.approx(360 * (HOUR_MS - 40_000) / HOUR_MS, abs=0.1) and line[-1] <= 360
    # a 36-second outage in the middle: two lines, the second starting after the gap
    before = [{"at_ms": NOW - 30 * 60_000 + i * HISTORY_STEP_MS, "lag": 5} for i in range(3)]
    after = [{"at_ms": before[-1]["at_ms"] + 36_000 + i * HISTORY_STEP_MS, "lag": 5} for i in range(3)]
    svg = _chart(before + after, "lag", NOW, width=360)
    assert 'data-gaps=1' in svg and len(xs(svg)) == 2
    assert xs(svg)[1][0] - xs(svg)[0][-1] == pytest.approx(360 * 36_000 / HOUR_MS, abs=0.1)


def test_times_read_as_iso_and_a_bad_time_gets_a_sentence():
    assert _time(NOW) == "2026-01-01T00:00:00.000Z" and _time(None) == "-"
    with pytest.raises(ValueError, match=r"^'yesterday' is not a time: write ISO-8601 with a timezone"):
        iso_to_ms("yesterday")


def test_the_skew_section_names_example_entities():
    report = {"reads": 10, "compared": 40, "bad": 1, "mismatch_rate": 0.025, "features": [
        {"feature": "amount_sum_5m", "compared": 10, "mismatches": 1, "missing": 0, "extra": 0, "largest_error": 3.0,
         "examples": [{"entity": "u0042", "read_ms": NOW, "kind": "mismatches", "online": 7.0, "offline": 10.0,
                       "status": "PRESENT"}]}]}
    html = _skew(report)
    assert "<td data-entity>u0042</td>" in html and "2026-01-01T00:00:00.000Z" in html and "mismatches" in html

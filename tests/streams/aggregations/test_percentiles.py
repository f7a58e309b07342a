"""approx_percentile: within 1% of the exact lower quantile, and one bucket rule for every path."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.aggregations.catalog import get_aggregation
from streams.aggregations.columns import EventColumn
from streams.aggregations.percentiles import GAMMA_EXACT, bucket_keys, exact_bucket
from tests.oracle import sketch_quantile


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0])
def test_within_one_percent_of_the_exact_lower_quantile(q):
    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.lognormal(3, 2, 20_000), -rng.lognormal(1, 1, 5_000), np.zeros(100)])
    agg = get_aggregation(f"approx_percentile({q})")
    state = agg.state_agg.combine([agg.state_agg.group_partials(_groups(part), np.array([0]), np.array([len(part)]))[0]
                                   for part in np.array_split(xs, 7)])
    exact = np.sort(xs)[max(1, math.ceil(q * len(xs))) - 1]
    got = agg.result(state)
    assert abs(got - exact) <= 0.01 * abs(exact), (got, exact)
    # the offline form: the bucket of the ceil(q n)-th value, the same number
    column = EventColumn(xs, np.ones(len(xs), dtype=bool))
    offline, present = agg.over_ranges(column, np.array([0]), np.array([len(xs)]))
    assert present[0] and offline[0] == got


@given(st.lists(st.integers(-3000, 3000), min_size=1, max_size=50), st.integers(-4, 4))
def test_values_on_bucket_edges_fall_in_the_contracts_bucket(powers, ulps):
    """The doubles nearest gamma^i (gamma = 101/99 exactly) and a few ulps either side of them sit on bucket
    edges: x is in bucket i when gamma^(i-1) < x <= gamma^i, decided exactly, not by a rounded log."""
    edges = [float(GAMMA_EXACT**i) for i in powers]
    near = [x if ulps == 0 else float(np.nextafter(x, np.inf if ulps > 0 else 0.0)) for x in edges]
    for _ in range(abs(ulps) - 1):
        near = [float(np.nextafter(x, np.inf if ulps > 0 else 0.0)) for x in near]
    xs = np.array(near + [-x for x in near])
    keys = bucket_keys(xs)
    for x, key in zip(xs.tolist(), keys.tolist(), strict=True):
        i = exact_bucket(abs(x))
        assert GAMMA_EXACT**(i - 1) < Fraction(abs(x)) <= GAMMA_EXACT**i
        assert key == 4 * i + (2 if x > 0 else 0)
        assert sketch_quantile([x], 1.0) == get_aggregation("approx_percentile(1.0)").result({key: 1})


def test_the_rank_is_exact_for_the_decimal_as_written():
    """0.28 * 25 is 7 exactly: the 7th value, though ceil(0.28 * 25) in doubles is 8 (semantics.md)."""
    assert math.ceil(0.28 * 25) == 8
    xs = np.array([float(10 * (k + 1)) for k in range(25)])  # 10, 20, ... 250: one bucket each
    agg = get_aggregation("approx_percentile(0.28)")
    state = agg.state_agg.group_partials(_groups(xs), np.array([0]), np.array([len(xs)]))[0]
    seventh = get_aggregation("approx_percentile(1.0)").result({int(bucket_keys(np.array([70.0]))[0]): 1})
    assert agg.result(state) == seventh == sketch_quantile(xs.tolist(), 0.28)
    offline, present = agg.over_ranges(EventColumn(xs, np.ones(25, dtype=bool)), np.array([0]), np.array([25]))
    assert present[0] and offline[0] == seventh


def _groups(values: np.ndarray):
    from streams.aggregations.columns import BatchField

    base = BatchField(values.tolist(), np.zeros(len(values), dtype=np.int64), np.arange(len(values)))
    return base.grouped(np.arange(len(values)))

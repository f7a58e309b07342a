"""approx_percentile: within 1% of the exact lower quantile, and one bucket rule for every path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.kernel.catalog import get_aggregation
from streams.kernel.event_columns import EventColumn
from streams.kernel.percentiles import GAMMA, bucket_keys
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


@given(st.lists(st.integers(-3000, 3000), min_size=1, max_size=50))
def test_values_on_bucket_edges_fall_in_the_contracts_bucket(powers):
    """gamma^i sits on a bucket edge: NumPy's log and the contract's math.log must pick the same bucket."""
    xs = np.array([GAMMA**i for i in powers] + [-(GAMMA**i) for i in powers])
    keys = bucket_keys(xs)
    for x, key in zip(xs.tolist(), keys.tolist(), strict=True):
        i = math.ceil(math.log(abs(x)) / math.log(GAMMA))
        assert key == 4 * i + (2 if x > 0 else 0)
        assert sketch_quantile([x], 1.0) == get_aggregation("approx_percentile(1.0)").result({key: 1})


def _groups(values: np.ndarray):
    from streams.kernel.event_columns import BatchField

    base = BatchField(values.tolist(), np.zeros(len(values), dtype=np.int64), np.arange(len(values)))
    return base.grouped(np.arange(len(values)))

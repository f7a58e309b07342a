"""Aggregation partials: merge and combine agree with adding everything to one state, and
count_distinct keeps the contract's accuracy (exact below 100, within 2% above 1,000)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.aggregations.catalog import AGGREGATIONS, get_aggregation
from streams.aggregations.distinct import EXACT_LIMIT
from tests.oracle import close

values = st.lists(st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)), max_size=30)


def fold(agg, xs, start=0):
    state = agg.initial()
    for i, x in enumerate(xs):
        state = agg.add(state, x, 1000 + ((start + i) % 3), start + i)  # same time and offset as in one pass
    return state


NAMES = [*sorted(AGGREGATIONS), "last_k(3)", "first_k(3)", "top_k(2)", "approx_percentile(0.9)",
         "approx_percentile(1.0)", "decayed_sum(1000)"]


def read(agg, state):
    return agg.result_at(state, 5000) if agg.reads_time else agg.result(state)


@pytest.mark.parametrize("name", NAMES)
@given(a=values, b=values, c=values)
def test_merge_and_combine_equal_one_pass(name, a, b, c):
    reader = get_aggregation(name)
    agg = reader.state_agg  # a quantile reads the shared sketch
    whole = read(reader, fold(agg, a + b + c))
    parts = [fold(agg, a), fold(agg, b, len(a)), fold(agg, c, len(a) + len(b))]
    merged = read(reader, agg.merge(agg.merge(parts[0], parts[1]), parts[2]))
    combined = read(reader, agg.combine(parts))
    if name == "stddev" and whole is not None:  # Welford vs Chan: both within 1e-9 of exact, not of each other
        assert close(merged, whole) or abs(merged - whole) <= 1e-6 * max(1.0, abs(whole))
    elif name.startswith(("approx_percentile", "decayed_sum", "top_k")):  # exact: the same number every way
        assert merged == whole and combined == whole, (merged, combined, whole)
    else:
        assert close(merged, whole), (merged, whole)
        assert close(combined, whole), (combined, whole)


@pytest.mark.parametrize("n", [1, 99, 100, 1000, EXACT_LIMIT])
def test_count_distinct_is_exact_up_to_the_limit(n):
    agg = AGGREGATIONS["count_distinct"]
    state = fold(agg, [f"v{i}" for i in range(n)] * 2)
    assert agg.result(state) == n


@pytest.mark.parametrize("n", [5_000, 20_000, 100_000])
def test_count_distinct_estimate_within_two_percent(n):
    agg = AGGREGATIONS["count_distinct"]
    rng = random.Random(n)
    items = [f"user-{rng.getrandbits(64)}" for _ in range(n)]
    halves = [fold(agg, items[: n // 2]), fold(agg, items[n // 2:])]  # merged sketches, as panes are
    estimate = agg.result(agg.combine(halves))
    assert abs(estimate - n) / n <= 0.02, estimate


def test_range_sums_survive_cancellation():
    """Naive summation of [1e17, 1, -1e17] gives 0; the contract asks for 1 to a relative 1e-9."""
    import numpy as np

    from streams.aggregations.columns import EventColumn

    column = EventColumn(np.array([1e17, 1.0, -1e17, 2.0]), np.array([True, True, True, False]))
    lo, hi = np.array([0, 0, 1, 3]), np.array([3, 4, 3, 4])
    sums, _ = AGGREGATIONS["sum"].over_ranges(column, lo, hi)
    means, present = AGGREGATIONS["mean"].over_ranges(column, lo, hi)
    assert sums.tolist() == [1.0, 1.0, -1e17 + 1.0, 0.0]
    assert means[:2].tolist() == [1 / 3, 1 / 3] and present.tolist() == [True, True, True, False]


def test_a_range_reduces_to_the_same_bits_wherever_it_lies_in_the_log():
    """A Dask partition changes which entity is last in its log: the range at the end must not be added in
    another order than the same range in the middle (ufunc.reduce's pairwise blocking would)."""
    import numpy as np

    from streams.aggregations.columns import reduce_ranges

    x = np.array([-2.89, 80.25, 390.7, 270.19, 1.77, 188.22, 213.48, 37.86, 354.02])
    alone = reduce_ranges(np.add, x, np.array([0]), np.array([9]), 0.0)
    middle = reduce_ranges(np.add, np.append(x, 1.0), np.array([0, 9]), np.array([9, 10]), 0.0)
    assert alone[0] == middle[0]
    rng = np.random.default_rng(4)
    for n in rng.integers(1, 400, 50).tolist():
        values = np.round(rng.uniform(-10, 500, n), 2)
        log = np.concatenate([np.round(rng.uniform(-10, 500, 7), 2), values])
        at_end = reduce_ranges(np.add, log, np.array([7]), np.array([7 + n]), 0.0)[0]
        inside = reduce_ranges(np.add, np.append(log, 3.0), np.array([7, 7 + n]), np.array([7 + n, 8 + n]), 0.0)[0]
        assert at_end == inside, n

"""Derived features: plain Python functions of one row's feature values and request-time inputs.

    @derived(inputs=["payments:amount_sum_1h", "payments:amount_count_1h", "request:amount"])
    def amount_vs_hour_mean(total, count, amount):
        return amount / (total / count) if count else None

A derived feature is evaluated after the read, on the values the contract
defines, by the same function online (`get_online_features`, HTTP) and in
the point-in-time join, so it agrees wherever its inputs agree. Inputs are
`view:feature` references or `request:<name>`, a value the caller supplies
with the entity row (online) or as a column of the entity table (offline).

A function that raises gives a null with status `ERROR` for that row and
counts in `errors`, never a failed read. A `vectorized=True` function takes
each input as a NumPy array (numbers as float64, NaN for null; anything
else as objects, None for null) and returns one array: one call per read or
per join, instead of one per row. NaN and infinite results read as null.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.errors import DefinitionError

__all__ = ["REQUEST_PREFIX", "DerivedFeature", "derived", "errors"]

REQUEST_PREFIX = "request:"

# Rows whose function raised, by derived feature name: exported as rillet_derived_errors_total.
errors: Counter = Counter()


@dataclass(frozen=True)
class DerivedFeature:
    """A named function of feature values and request inputs; see the module docstring."""

    name: str
    function: Callable[..., Any] = field(compare=False)
    inputs: tuple[str, ...]
    vectorized: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise DefinitionError(f"derived feature {self.name!r}: name it with letters, digits and _")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            raise DefinitionError(f"derived feature {self.name}: needs at least one input")
        for ref in self.inputs:
            if not isinstance(ref, str) or ":" not in ref or ref.endswith(":*") or ref.endswith(":"):
                raise DefinitionError(f"derived feature {self.name}: input {ref!r} is neither 'view:feature' "
                                      f"nor '{REQUEST_PREFIX}name'")

    @property
    def feature_inputs(self) -> list[str]:
        return [ref for ref in self.inputs if not ref.startswith(REQUEST_PREFIX)]

    @property
    def request_inputs(self) -> list[str]:
        return [ref.removeprefix(REQUEST_PREFIX) for ref in self.inputs if ref.startswith(REQUEST_PREFIX)]

    def evaluate(self, columns: list[list[Any]]) -> tuple[list[Any], list[str]]:
        """The function over rows given as one list per input (in `inputs` order): (values, statuses),
        each status `PRESENT`, `NULL_VALUE` or `ERROR`."""
        n = len(columns[0]) if columns else 0
        if self.vectorized:
            try:
                out = np.asarray(self.function(*[_as_array(c) for c in columns]))
                if out.shape != (n,):
                    raise ValueError(f"returned shape {out.shape}, expected ({n},)")
                values = [_plain(v) for v in out.tolist()]
            except Exception:  # the user's function: any failure is its rows' ERROR, never the read's
                errors[self.name] += n
                return [None] * n, ["ERROR"] * n
            return values, ["NULL_VALUE" if v is None else "PRESENT" for v in values]
        values, statuses = [], []
        for args in zip(*columns, strict=True):
            try:
                value = _plain(self.function(*args))
            except Exception:
                errors[self.name] += 1
                values.append(None)
                statuses.append("ERROR")
                continue
            values.append(value)
            statuses.append("NULL_VALUE" if value is None else "PRESENT")
        return values, statuses


def derived(inputs: list[str], *, name: str | None = None, vectorized: bool = False
            ) -> Callable[[Callable[..., Any]], DerivedFeature]:
    """Declare a derived feature: `@derived(inputs=[...])` over a function taking one argument per input."""
    def wrap(function: Callable[..., Any]) -> DerivedFeature:
        return DerivedFeature(name or function.__name__, function, tuple(inputs), vectorized)
    return wrap


def _as_array(column: list[Any]) -> np.ndarray:
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in column):
        return np.array([np.nan if v is None else v for v in column], dtype=np.float64)
    out = np.empty(len(column), dtype=object)
    out[:] = column
    return out


def _plain(value: Any) -> Any:
    """A result as JSON and Arrow hold it: NumPy scalars as Python ones, NaN and infinities as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

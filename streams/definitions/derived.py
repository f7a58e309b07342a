"""Derived features: plain Python functions of one row's feature values and request-time inputs.

    @derived(inputs=["payments:amount_sum_1h", "payments:amount_count_1h", "request:amount"])
    def amount_vs_hour_mean(total, count, amount):
        return amount / (total / count) if count else None

A derived feature is evaluated after the read, on the values the contract
defines, by the same function online (`get_online_features`, HTTP) and in
the point-in-time join, so it agrees wherever its inputs agree. Inputs are
`view:feature` references or `request:<name>`, a value the caller supplies
with the entity row (online) or as a column of the entity table (offline).

Each request input has a type: the annotation of its parameter (`amount: float`)
or the declaration `request:amount:float` (float, int, str or bool). Every path
converts the value the caller gives the same way (a JSON number, the text of a
CLI argument or a CSV cell): `"12.5"` becomes `12.5` for a float; a value that
does not convert is a RequestInputError naming the input, not a null.

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

from streams.errors import DefinitionError, RequestInputError

__all__ = ["REQUEST_PREFIX", "REQUEST_TYPES", "DerivedFeature", "derived", "errors"]

REQUEST_PREFIX = "request:"
REQUEST_TYPES: dict[str, type] = {"float": float, "int": int, "str": str, "bool": bool}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}

# Rows whose function raised, by derived feature name: exported as rillet_derived_errors_total.
errors: Counter = Counter()


@dataclass(frozen=True)
class DerivedFeature:
    """A named function of feature values and request inputs; see the module docstring."""

    name: str
    function: Callable[..., Any] = field(compare=False)
    inputs: tuple[str, ...]
    vectorized: bool = False
    request_types: dict[str, type] = field(default_factory=dict, compare=False)  # request input -> its type

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise DefinitionError(f"derived feature {self.name!r}: name it with letters, digits and _")
        if not self.inputs:
            raise DefinitionError(f"derived feature {self.name}: needs at least one input")
        for ref in self.inputs:
            if not isinstance(ref, str) or ":" not in ref or ref.endswith(":*") or ref.endswith(":"):
                raise DefinitionError(f"derived feature {self.name}: input {ref!r} is neither 'view:feature' "
                                      f"nor '{REQUEST_PREFIX}name'")
        inputs, types = [], dict(self.request_types)
        annotations = _parameter_annotations(self.function, len(self.inputs))
        for ref, annotation in zip(self.inputs, annotations, strict=True):
            if not ref.startswith(REQUEST_PREFIX):
                inputs.append(ref)
                continue
            name, _, declared = ref.removeprefix(REQUEST_PREFIX).partition(":")
            inputs.append(REQUEST_PREFIX + name)
            kind = declared or (annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""))
            if name in types:
                continue
            if kind not in REQUEST_TYPES:
                raise DefinitionError(
                    f"derived feature {self.name}: request input {name!r} needs a type: annotate its parameter "
                    f"({name}: float) or declare it as '{REQUEST_PREFIX}{name}:float' "
                    f"(types: {', '.join(REQUEST_TYPES)})" + (f"; {kind!r} is not one" if kind else ""))
            types[name] = REQUEST_TYPES[kind]
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "request_types", types)

    def request_values(self, name: str, values: list[Any], where: str = "row") -> list[Any]:
        """A request input's values as its declared type (None stays None), the same on every path.

        Raises:
            RequestInputError: a value that does not convert, naming the input, the row and the type.
        """
        kind = self.request_types[name]
        try:
            return [_convert(kind, v) for v in values]
        except (TypeError, ValueError):
            i, bad = next((i, v) for i, v in enumerate(values) if not _converts(kind, v))
            raise RequestInputError(f"request input {name!r} of derived feature {self.name}: {where} {i} has "
                                    f"{bad!r}, which is not a {kind.__name__}") from None

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


def _parameter_annotations(function: Callable[..., Any], n: int) -> list[Any]:
    """The annotation of each of the function's first `n` parameters (None where there is none)."""
    import inspect

    try:
        parameters = list(inspect.signature(function).parameters.values())[:n]
    except (TypeError, ValueError):
        return [None] * n
    found = [None if p.annotation is inspect.Parameter.empty else p.annotation for p in parameters]
    return found + [None] * (n - len(found))


def _convert(kind: type, value: Any) -> Any:
    """One request value as `kind`: text is parsed (CLI, CSV), numbers pass where they fit."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, str | int) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(value)
    if isinstance(value, bool):
        raise TypeError(value)
    if kind is float:
        return float(value.strip()) if isinstance(value, str) else float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(value.strip()) if isinstance(value, str) else int(value)


def _converts(kind: type, value: Any) -> bool:
    try:
        _convert(kind, value)
    except (TypeError, ValueError):
        return False
    return True


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

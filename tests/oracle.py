"""A brute-force oracle written straight from shared/semantics.md, sharing no code with rillet's engine.

It recomputes every value from the full list of (non-late) events each time:
slow, obviously right, and independent of panes, partials and merges.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class OEvent:
    entity: str
    t: int
    values: dict[str, Any]
    offset: int


GAMMA = Fraction(101, 99)  # the contract's gamma: the fraction, not a double


@functools.cache
def _gamma_to(i: int) -> Fraction:
    return GAMMA**i


@functools.cache
def _stands_for(x: float) -> float:
    if x == 0:
        return 0.0
    magnitude = Fraction(abs(x))
    i = round(math.log(abs(x)) / math.log(101 / 99))  # a guess: exact comparisons decide
    while magnitude > _gamma_to(i):  # walk to the bucket: the first i with x <= gamma^i
        i += 1
    while magnitude <= _gamma_to(i - 1):
        i -= 1
    value = float(2 * _gamma_to(i) / (GAMMA + 1))
    return value if x > 0 else -value


def sketch_quantile(xs: list[float], q: float) -> float | None:
    """The contract's percentile sketch, straight from its words, in exact arithmetic: x is in bucket i when
    gamma^(i-1) < x <= gamma^i, which stands for 2·gamma^i/(gamma + 1) rounded once; the ceil(q*n)-th value,
    q the decimal as written."""
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return None

    counts: dict[float, int] = {}
    for x in xs:
        counts[_stands_for(x)] = counts.get(_stands_for(x), 0) + 1
    rank, seen = max(1, math.ceil(Fraction(repr(q)) * len(xs))), 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket
    raise AssertionError


def _param(name: str) -> str:
    return name[name.index("(") + 1:-1]


def _agg(name: str, field: str | None, events: list[OEvent], t: int) -> Any:
    if name == "count":
        return len(events)
    if name == "age":
        return t - min(e.t for e in events) if events else None
    vals = [(e.t, e.offset, e.values.get(field)) for e in events if e.values.get(field) is not None]
    xs = [v for _, _, v in vals]
    if name == "sum":
        return math.fsum(xs) if xs else 0
    if name == "count_distinct":
        return len(set(xs))
    if name.startswith("decayed_sum("):
        from streams.timeutil import parse_duration_ms

        h = int(_param(name)) if _param(name).isdigit() else parse_duration_ms(_param(name))
        return math.fsum(v * 2.0 ** (-(t - et) / h) for et, _, v in vals)
    if name.startswith("last_k("):
        return [v for _, _, v in sorted(vals, key=lambda v: (v[0], v[1]), reverse=True)[:int(_param(name))]]
    if name.startswith("first_k("):
        return [v for _, _, v in sorted(vals, key=lambda v: (v[0], v[1]))[:int(_param(name))]]
    if name.startswith("top_k("):
        counts: dict[Any, int] = {}
        for x in xs:
            counts[x] = counts.get(x, 0) + 1
        return [[v, n] for v, n in sorted(counts.items(), key=lambda p: (-p[1], p[0]))[:int(_param(name))]]
    if name.startswith("approx_percentile("):
        return sketch_quantile(xs, float(_param(name)))
    if not xs:
        return None
    if name == "mean":
        return float(sum(Fraction(x) for x in xs) / len(xs))
    if name == "min":
        return min(xs)
    if name == "max":
        return max(xs)
    if name == "last":
        return max(vals, key=lambda v: (v[0], v[1]))[2]
    if name == "first":
        return min(vals, key=lambda v: (v[0], v[1]))[2]
    if name == "stddev":
        mean = sum(Fraction(x) for x in xs) / len(xs)
        return math.sqrt(float(sum((Fraction(x) - mean) ** 2 for x in xs) / len(xs)))
    raise ValueError(name)


def sessions(times: list[int], gap: int) -> list[tuple[int, int]]:
    """Maximal runs of sorted times, each at most `gap` after the one before."""
    out: list[list[int]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= gap:
            out[-1][1] = t
        else:
            out.append([t, t])
    return [(a, b) for a, b in out]


def value_at(view: Any, events: list[OEvent], entity: str, t: int) -> dict[str, Any]:
    """Every feature of `view` for `entity` at time `t`, from the raw events."""
    mine = [e for e in events if e.entity == entity and e.t <= t]
    names = []
    for f in view.features:
        names.append(f.name)
    gaps = []
    for f in view.features:
        gap = getattr(f.window, "gap_ms", None)
        if gap is not None and gap not in gaps:
            gaps.append(gap)
    from streams.timeutil import duration_label

    session_cols = [f"session_{duration_label(g)}_{p}" for g in gaps for p in ("start", "end", "active")]
    if not mine or max(e.t for e in mine) < t - view.ttl_ms:
        return dict.fromkeys(names + session_cols)
    out: dict[str, Any] = {}
    for f in view.features:
        w = f.window
        if type(w).__name__ == "Lifetime":
            in_window = mine
        elif hasattr(w, "gap_ms"):
            latest = max(e.t for e in mine)
            start, end = next((a, b) for a, b in sessions([e.t for e in mine], w.gap_ms) if a <= latest <= b)
            in_window = [e for e in mine if start <= e.t <= end]
        else:
            step = getattr(w, "step_ms", w.size_ms)
            lo = (t // step) * step + step - w.size_ms
            in_window = [e for e in mine if lo <= e.t <= t]
        out[f.name] = _agg(f.aggregation, f.field, in_window, t)
    latest = max(e.t for e in mine)
    for g in gaps:
        start, end = next((a, b) for a, b in sessions([e.t for e in mine], g) if a <= latest <= b)
        label = duration_label(g)
        out[f"session_{label}_start"] = start
        out[f"session_{label}_end"] = end
        out[f"session_{label}_active"] = t - end <= g
    return out


def late_mask(arrivals: list[OEvent], grace: int, partition_of) -> list[bool]:
    """Which events (in arrival order) are late: earlier than their partition's watermark - grace."""
    watermark: dict[int, int] = {}
    late = []
    for e in arrivals:
        p = partition_of(e)
        wm = watermark.get(p)
        is_late = wm is not None and e.t < wm - grace
        late.append(is_late)
        if not is_late:
            watermark[p] = max(wm if wm is not None else e.t, e.t)
    return late


def close(a: Any, b: Any) -> bool:
    """Equal, with floats to a relative 1e-9 (semantics.md); lists item by item; a top_k pair as training data
    types it ({value, count}) is the contract's [value, count]."""
    a, b = _pair(a), _pair(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _pair(x: Any) -> Any:
    return [x["value"], x["count"]] if isinstance(x, dict) and set(x) == {"value", "count"} else x

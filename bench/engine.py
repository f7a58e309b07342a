"""The pure path's speed: Avro decode -> lateness -> window engine -> state bytes -> offline rows.

    python -m bench.engine [--events N]

Prints events/s and feature updates/s (events x features) for the example
payments view, in batches as the worker runs them, with and without the
per-event offline rows; then the same view plus percentile, top-k and last-k
features (`with_rich_features`), to show what those cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from schemas.codec import EventDecoder, EventEncoder
from streams.cli.demo import synthetic_payments
from streams.definitions.view import Feature, FeatureView, load_views
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import SourceRecord, ViewProcessor
from streams.kernel.watermark import Watermarks


class _Ids:
    """Schema ids in memory: the benchmark measures compute, not a registry."""

    def __init__(self) -> None:
        self.schemas: dict[int, dict] = {}

    def register(self, subject: str, schema: dict) -> int:
        self.schemas[1] = schema
        return 1

    def schema_by_id(self, schema_id: int) -> dict:
        return self.schemas[schema_id]


def records_for(view, events: list[dict]) -> list[SourceRecord]:
    encoder = EventEncoder(view, _Ids())
    return [SourceRecord(view.topic, hash(e["user_id"]) % 4, i, None, e["user_id"].encode(), encoder.encode(e))
            for i, e in enumerate(events)]


def with_rich_features(view: FeatureView) -> FeatureView:
    """The view plus p50 and p99 of amount, the top 3 merchants and the last 5 amounts, over each of its
    tumbling and sliding windows: the aggregations whose states are maps and lists, not numbers."""
    windows = list(dict.fromkeys(f.window for f in view.features if not hasattr(f.window, "gap_ms")))
    extra = [Feature(field, agg, w) for w in windows
             for field, agg in (("amount", "approx_percentile(0.5)"), ("amount", "approx_percentile(0.99)"),
                                ("merchant", "top_k(3)"), ("amount", "last_k(5)"))]
    return dataclasses.replace(view, name=f"{view.name}_rich", features=(*view.features, *extra))


def run(view, records: list[SourceRecord], *, with_rows: bool, batch: int = 2000) -> float:
    store = _Ids()
    store.register("", view.schema_json)
    processor = ViewProcessor(ViewEngine(view), EventDecoder(view, store), Watermarks())
    states: dict[str, bytes] = {}
    started = time.perf_counter()
    for lo in range(0, len(records), batch):
        result = processor.process(records[lo:lo + batch], states.get, 0, with_rows=with_rows)
        for write in processor.state_writes(result):
            states[write.entity] = write.state
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--features", default="examples/payments/features.py")
    args = parser.parse_args()
    [view] = load_views(args.features)
    now = 1_767_225_600_000
    print(f"generating {args.events:,} events ...", flush=True)
    records = records_for(view, synthetic_payments(1000, args.events, now - 3 * 3_600_000, now))
    rates = {}
    rich = with_rich_features(view)
    for subject, label, rows in ((view, "engine + state bytes", False),
                                 (view, "engine + state bytes + offline rows", True),
                                 (rich, "+ percentiles, top-k, last-k", True)):
        seconds = run(subject, records, with_rows=rows)
        n_features = len(subject.features)
        rates[label] = args.events / seconds
        print(f"{label:<40} {args.events / seconds:>10,.0f} events/s  "
              f"{args.events * n_features / seconds:>12,.0f} feature updates/s  ({n_features} features)")
    print(f"ratio with / without percentile, top-k and last-k features: "
          f"{rates['+ percentiles, top-k, last-k'] / rates['engine + state bytes + offline rows']:.2f}")


if __name__ == "__main__":
    main()

"""The benchmark's view: 3 windows x 5 aggregations over payment amounts."""

from streams import Feature, FeatureView, Session, Sliding, Tumbling

WINDOWS = (Tumbling("5m"), Sliding("1h", "5m"), Session("30m"))

bench = FeatureView(
    name="bench", topic="bench", schema="../schemas/payment.avsc", entity="user_id", event_time="event_time",
    ttl="1d", grace="2m", partitions=4,
    features=[Feature("amount", agg, w) for agg in ("count", "sum", "mean", "min", "max") for w in WINDOWS],
)

"""The online view the read benchmark serves: 20 features over three windows."""

from streams import Feature, FeatureView, Session, Sliding, Tumbling

AGGS = ("count", "sum", "mean", "min", "max", "stddev", "last")
WINDOWS = (Tumbling("5m"), Sliding("1h", "5m"), Session("30m"))

online_bench = FeatureView(
    name="online_bench", topic="online_bench", schema="../schemas/payment.avsc", entity="user_id",
    event_time="event_time", ttl="7d",
    features=[Feature("amount", agg, w) for agg in AGGS for w in WINDOWS][:20],
)

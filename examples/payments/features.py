"""Payment features per user: the example view `rillet demo` runs."""

from datetime import timedelta

from streams import Feature, FeatureView, Range, Session, Sliding, Tumbling

five_minutes = Tumbling(timedelta(minutes=5))
last_hour = Sliding(timedelta(hours=1), step=timedelta(minutes=5))
visit = Session(gap=timedelta(minutes=30))

payments = FeatureView(
    name="payments",
    topic="payments",
    schema="../../schemas/payment.avsc",
    entity="user_id",
    event_time="event_time",
    ttl=timedelta(days=1),
    grace=timedelta(minutes=2),
    freshness=timedelta(minutes=5),  # alert when the newest applied payment is older than this
    checks={"amount": Range(0, 1_000_000)},
    features=[
        Feature("amount", "count", five_minutes),
        Feature("amount", "sum", five_minutes),
        Feature("amount", "mean", five_minutes),
        Feature("amount", "min", five_minutes),
        Feature("amount", "max", five_minutes),
        Feature("amount", "sum", last_hour),
        Feature("amount", "mean", last_hour),
        Feature("amount", "stddev", last_hour),
        Feature("merchant", "count_distinct", last_hour),
        Feature("merchant", "last", last_hour),
        Feature("amount", "count", visit),
        Feature("amount", "sum", visit),
    ],
)

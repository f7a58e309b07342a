"""Payment features per user: the example view `rillet demo` runs."""

from datetime import timedelta

from streams import Feature, FeatureService, FeatureView, Range, Session, Sliding, Tumbling, derived

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


@derived(inputs=["payments:amount_mean_1h_every_5m", "request:amount"])
def amount_vs_hour_mean(mean_1h, amount: float):
    """How a payment being scored compares with the user's mean over the last hour (null without one).

    `amount: float` types the request input: "250" from the CLI or a CSV arrives as 250.0."""
    return amount / mean_1h if mean_1h else None


# The features a fraud model reads, as one unit: rillet get --service fraud_v1 --entity user_id=u1,amount=250
fraud_v1 = FeatureService("fraud_v1", ["payments:amount_sum_5m", "payments:amount_count_5m",
                                       "payments:merchant_count_distinct_1h_every_5m", amount_vs_hour_mean])

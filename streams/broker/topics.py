"""Create a view's topics up front with their intended partition counts.

Tansu auto-creates a topic used before it exists with 4 partitions, so the
source and dead-letter topics are always created explicitly first.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker.kafka_log import client_config
from streams.definitions.view import FeatureView
from streams.errors import StackError
from streams.settings import Settings

__all__ = ["ensure_topic", "ensure_topics", "partition_counts"]


def partition_counts(settings: Settings) -> dict[str, int]:
    """Every topic's partition count, from the broker's metadata."""
    admin = AdminClient(client_config(settings.bootstrap_servers))
    try:
        topics = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise StackError(f"broker at {settings.bootstrap_servers} does not answer: {exc}") from None
    return {name: len(meta.partitions) for name, meta in topics.items()}


def ensure_topics(settings: Settings, views: list[FeatureView]) -> list[str]:
    """Create each view's source and DLQ topic if missing; returns the names created."""
    wanted = {}
    for view in views:
        for name in (view.topic, view.dlq_topic):
            wanted[name] = view.partitions or settings.partitions
    return _create_missing(settings, wanted)


def ensure_topic(settings: Settings, name: str, partitions: int | None = None) -> list[str]:
    """Create one topic if missing (rillet's own, such as the served-feature log)."""
    return _create_missing(settings, {name: partitions or settings.partitions})


def _create_missing(settings: Settings, partitions_by_name: dict[str, int]) -> list[str]:
    admin = AdminClient(client_config(settings.bootstrap_servers))
    existing = set(partition_counts(settings))
    wanted = {name: NewTopic(name, num_partitions=n, replication_factor=1)
              for name, n in partitions_by_name.items() if name not in existing}
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(list(wanted.values()), request_timeout=15).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise StackError(f"cannot create topic {name}: {exc}") from None
    return created

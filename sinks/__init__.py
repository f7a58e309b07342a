"""The Redis online store, the Parquet offline store, and reads from both."""

from sinks.historical import OfflineReader
from sinks.keys import online_key
from sinks.offline import OfflineStore, read_offline
from sinks.online import OnlineStore
from sinks.reads import FeatureReader, OnlineResponse

__all__ = [
    "FeatureReader", "OfflineReader", "OfflineStore", "OnlineResponse", "OnlineStore", "online_key", "read_offline",
]

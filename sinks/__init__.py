"""The Redis online store, the Parquet offline store, and reads from both."""

from sinks.offline.join import OfflineReader
from sinks.offline.store import OfflineStore, read_offline
from sinks.online.keys import online_key
from sinks.online.reads import FeatureReader, OnlineResponse
from sinks.online.store import OnlineStore

__all__ = [
    "FeatureReader", "OfflineReader", "OfflineStore", "OnlineResponse", "OnlineStore", "online_key", "read_offline",
]

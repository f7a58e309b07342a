"""Window definitions: tumbling, sliding (hopping), session and lifetime, in event time."""

from streams.windows.lifetime import LIFETIME_MS, Lifetime
from streams.windows.session import Session
from streams.windows.sliding import Sliding
from streams.windows.tumbling import Tumbling

Window = Tumbling | Sliding | Session | Lifetime

__all__ = ["LIFETIME_MS", "Lifetime", "Session", "Sliding", "Tumbling", "Window"]

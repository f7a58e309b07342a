"""Window definitions: tumbling, sliding (hopping), session and lifetime, in event time."""

from streams.kernel.windows.lifetime import LIFETIME_MS, Lifetime
from streams.kernel.windows.session import Session
from streams.kernel.windows.sliding import Sliding
from streams.kernel.windows.tumbling import Tumbling

Window = Tumbling | Sliding | Session | Lifetime

__all__ = ["LIFETIME_MS", "Lifetime", "Session", "Sliding", "Tumbling", "Window"]

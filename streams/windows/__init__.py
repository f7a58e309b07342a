"""Window definitions: tumbling, sliding (hopping) and session, in event time."""

from streams.windows.session import Session
from streams.windows.sliding import Sliding
from streams.windows.tumbling import Tumbling

Window = Tumbling | Sliding | Session

__all__ = ["Session", "Sliding", "Tumbling", "Window"]

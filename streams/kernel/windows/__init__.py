"""Window definitions: tumbling, sliding (hopping) and session, in event time."""

from streams.kernel.windows.session import Session
from streams.kernel.windows.sliding import Sliding
from streams.kernel.windows.tumbling import Tumbling

Window = Tumbling | Sliding | Session

__all__ = ["Session", "Sliding", "Tumbling", "Window"]

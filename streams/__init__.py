"""rillet: streaming feature pipeline. Feature definitions are the public surface here."""

from streams.definitions import Feature, FeatureView, NotNull, Range, load_views
from streams.errors import RilletError
from streams.kernel.windows import Lifetime, Session, Sliding, Tumbling

__all__ = ["Feature", "FeatureView", "Lifetime", "NotNull", "Range", "RilletError", "Session", "Sliding", "Tumbling",
           "load_views"]

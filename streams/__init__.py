"""rillet: streaming feature pipeline. Feature definitions are the public surface here."""

from streams.definitions import Feature, FeatureView, NotNull, Range, load_views
from streams.derived import DerivedFeature, derived
from streams.errors import RilletError
from streams.kernel.windows import Lifetime, Session, Sliding, Tumbling
from streams.services import FeatureService, load_definitions

__all__ = ["DerivedFeature", "Feature", "FeatureService", "FeatureView", "Lifetime", "NotNull", "Range", "RilletError",
           "Session", "Sliding", "Tumbling", "derived", "load_definitions", "load_views"]

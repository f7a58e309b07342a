"""rillet: streaming feature pipeline. Feature definitions are the public surface here."""

from streams.definitions.derived import DerivedFeature, derived
from streams.definitions.services import FeatureService, load_definitions
from streams.definitions.view import Feature, FeatureView, NotNull, Range, load_views
from streams.errors import RilletError
from streams.windows import Lifetime, Session, Sliding, Tumbling

__all__ = ["DerivedFeature", "Feature", "FeatureService", "FeatureView", "Lifetime", "NotNull", "Range", "RilletError",
           "Session", "Sliding", "Tumbling", "derived", "load_definitions", "load_views"]

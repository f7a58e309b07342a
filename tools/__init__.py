"""Small tools for the developers of rillet (not shipped)."""

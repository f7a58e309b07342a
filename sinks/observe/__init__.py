"""Watching the pipeline: the served-feature log, training/serving skew, and `rillet status`."""

"""Serving over HTTP: the feature API with its OpenAPI document, and the web console."""

"""What users declare: feature views, services, derived features, entity keys, and loading them from a file."""

"""The embedded stack for a laptop and the tests: Tansu, Valkey (a cluster too) and a schema registry."""

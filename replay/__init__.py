"""Kappa replay: rebuild a view from its topic into a new version, then switch over.

`versions` keeps each view's numbered versions and the active pointer in Redis;
`run` re-reads the topic through the same window engine as the live worker,
writes the new version's states and event log, and switches atomically once
it has caught up with the head.
"""

__all__: list[str] = []

"""Kappa replay: rebuild a view from its topic into a new version, then switch over.

Not built yet (issue 6). Versions already shape the layout: online keys and
offline paths carry `v{version}`, and every view has a `fingerprint`.
"""

__all__: list[str] = []

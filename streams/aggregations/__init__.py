"""The aggregations: what each one keeps per pane or session, and how partials merge (pure, no I/O)."""

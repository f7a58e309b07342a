"""Reading a running worker's /health and /metrics: what the demo, benchmarks and tests wait on."""

from __future__ import annotations

import json
import urllib.request

__all__ = ["worker_health", "worker_metric"]


def worker_health(port: int) -> dict:
    """The worker's /health document, or {} while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return {}


def worker_metric(port: int, name: str, view: str | None = None) -> float:
    """The sum of a metric's samples (of one view, if given); 0 while the worker does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if view is not None and f'view="{view}"' not in line:
            continue
        total += float(line.split()[-1])
    return total

"""Sum pytest's `--durations=0` lines per test file, as JSON: `make test-durations` writes tests/durations.json.

tests/conftest.py runs the longest files first from it, so `make test`'s two processes finish together.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+(\S+?\.py)::")


def main() -> None:
    seconds: dict[str, float] = defaultdict(float)
    for line in sys.stdin:
        sys.stderr.write(line)
        match = LINE.match(line)
        if match:
            seconds[match.group(2)] += float(match.group(1))
    if not seconds:
        sys.exit("no --durations lines on stdin")
    ranked = dict(sorted(((path, round(took, 1)) for path, took in seconds.items()), key=lambda kv: -kv[1]))
    print(json.dumps(ranked, indent=1))


if __name__ == "__main__":
    main()

"""The kernel is pure: no module under streams/kernel imports anything that does I/O.

Every path drives the same kernel (architecture.md); keeping I/O out of it is what
lets the worker, the replay, the online read and the point-in-time join share it,
and what lets it be tested against the oracle without a broker or Redis.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KERNEL = Path(__file__).resolve().parents[3] / "streams" / "kernel"
# computation only: the standard library's pure parts, numpy/pyarrow compute, msgpack, and rillet's own
# definitions, errors, time helpers, Avro decoding and record types
ALLOWED_ROOTS = {"__future__", "dataclasses", "typing", "collections", "bisect", "math", "hashlib", "functools",
                 "contextlib", "gc", "itertools", "re", "fractions",  # gc: memory, not I/O
                 "datetime", "numpy", "pyarrow", "msgpack", "streams", "schemas", "sinks"}
ALLOWED_RILLET = {"streams.definitions", "streams.errors", "streams.timeutil", "schemas.codec", "sinks.records"}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(KERNEL.rglob("*.py")), ids=lambda p: str(p.relative_to(KERNEL)))
def test_kernel_modules_import_nothing_that_does_io(module):
    for name in imports_of(module):
        root = name.split(".")[0]
        assert root in ALLOWED_ROOTS, f"{module.name} imports {name}"
        if root in ("streams", "schemas", "sinks") and not name.startswith("streams.kernel"):
            assert name in ALLOWED_RILLET, f"{module.name} imports {name}, which is not part of the pure core"
        assert name not in ("pyarrow.parquet", "pyarrow.dataset", "pyarrow.fs"), f"{module.name} imports {name}"

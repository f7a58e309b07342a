"""The core is pure: no module under streams/windows, streams/aggregations or streams/kernel imports
anything that does I/O, nor anything from schemas/ or sinks/.

Every path drives the same kernel (architecture.md); keeping I/O out of it is what
lets the worker, the replay, the online read and the point-in-time join share it,
and what lets it be tested against the oracle without a broker or Redis. Decoding
comes in through the kernel's `Decoder` protocol, not by importing the codec.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STREAMS = Path(__file__).resolve().parents[3] / "streams"
CORE = [STREAMS / "windows", STREAMS / "aggregations", STREAMS / "kernel"]
# computation only: the standard library's pure parts, numpy/pyarrow compute, polars' sort (the point-in-time
# log's; none of polars' readers or writers), msgpack
ALLOWED_ROOTS = {"__future__", "dataclasses", "typing", "collections", "bisect", "math", "hashlib", "functools",
                 "contextlib", "gc", "itertools", "re", "fractions",  # gc: memory, not I/O
                 "time",  # the collector's hourly full pass (streams.kernel.collector): no value depends on it
                 "datetime", "numpy", "pyarrow", "polars", "msgpack", "streams"}
#: rillet's own modules the core may use: itself, the definitions it compiles, errors and time helpers
ALLOWED_RILLET = ("streams.windows", "streams.aggregations", "streams.kernel", "streams.definitions.view",
                  "streams.errors", "streams.timeutil")


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(p for folder in CORE for p in folder.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(STREAMS)))
def test_core_modules_import_nothing_that_does_io(module):
    for name in imports_of(module):
        root = name.split(".")[0]
        assert root in ALLOWED_ROOTS, f"{module.name} imports {name}"
        if root == "streams":
            assert any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_RILLET), \
                f"{module.name} imports {name}, which is not part of the pure core"
        assert name not in ("pyarrow.parquet", "pyarrow.dataset", "pyarrow.fs"), f"{module.name} imports {name}"

"""The house's figures, measured from the imports: `python -m tools.house`.

Every `import` counts, in functions and under TYPE_CHECKING too. Each module lives in a room
(ROOMS, lowest first); a room may import only itself and the rooms below it. Prints the number
of modules, the largest files, the imports that run upward, the circles, and which modules
build Redis keys and offline paths; tests/test_layering.py holds the house to them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("streams", "sinks", "replay", "schemas")

#: the rooms, lowest first; a module belongs to the room with the longest matching prefix
ROOMS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("streams.errors", "streams.timeutil", "streams.settings", "streams.faults", "streams.http_body")),
    ("windows", ("streams.windows",)),
    ("aggregations", ("streams.aggregations",)),
    ("definitions", ("streams.definitions", "streams")),  # `streams` itself re-exports the definitions
    ("kernel", ("streams.kernel",)),
    ("clients", ("sinks.redis_client",)),  # connecting to Redis, as the schema store does too
    ("schemas", ("schemas",)),
    ("broker", ("streams.broker",)),
    ("stack", ("streams.stack",)),
    ("online", ("sinks.online",)),
    ("offline", ("sinks.offline",)),
    ("observe", ("sinks.observe",)),
    ("serve", ("sinks.serve",)),
    ("sinks", ("sinks",)),  # `sinks` itself re-exports the stores and readers
    ("worker", ("streams.worker",)),
    ("replay", ("replay",)),
    ("cli", ("streams.cli",)),
]


def room_of(module: str) -> tuple[int, str]:
    best = max(((len(prefix), rank, name) for rank, (name, prefixes) in enumerate(ROOMS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no room: add it to ROOMS"
    return best[1], best[2]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in known and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def builders(fragment: str) -> list[str]:
    """Modules with a string or f-string part ending in `fragment` (as `f"view={name}"` does)."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(fragment):
                found.append(name)
                break
    return sorted(found)


def upward_imports() -> list[str]:
    return sorted(f"{name} ({room_of(name)[1]}) imports {target} ({room_of(target)[1]})"
                  for name, targets in imports().items() for target in targets
                  if room_of(target)[0] > room_of(name)[0])


def line_counts() -> dict[str, int]:
    return {name: len(path.read_text().splitlines()) for name, path in modules().items()}


def main() -> None:
    counts = line_counts()
    largest = sorted(counts.items(), key=lambda item: -item[1])[:5]
    print(f"modules: {len(counts)}, lines: {sum(counts.values()):,}")
    print("largest: " + ", ".join(f"{name} {n}" for name, n in largest))
    print(f"over 400 lines: {sum(n > 400 for n in counts.values())}")
    upward = upward_imports()
    print(f"imports against the layering: {len(upward)}" + "".join(f"\n  {u}" for u in upward))
    found = circles(imports())
    print(f"import circles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    print(f"modules building Redis keys: {', '.join(builders('rillet:'))}")
    print(f"modules building offline paths: {', '.join(sorted(set(builders('view=')) | set(builders('version='))))}")


if __name__ == "__main__":
    main()

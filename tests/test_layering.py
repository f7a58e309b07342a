"""The house's rules, measured from the imports (every `import`, in functions and under TYPE_CHECKING too):
each module lives in a room, a room imports only itself and the rooms below it, no module imports
its way round in a circle, every Redis key is built in one module and every offline path in one."""

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


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _imports() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
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


def test_no_import_circle():
    assert _circles(_imports()) == []


def test_every_module_imports_only_its_own_room_and_the_rooms_below():
    upward = sorted(f"{name} ({room_of(name)[1]}) imports {target} ({room_of(target)[1]})"
                    for name, targets in _imports().items() for target in targets
                    if room_of(target)[0] > room_of(name)[0])
    assert upward == []


def _builders(fragment: str) -> list[str]:
    """Modules with a string or f-string part ending in `fragment` (as `f"view={name}"` does)."""
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(fragment):
                found.append(name)
                break
    return sorted(found)


def test_every_offline_path_is_built_in_one_module():
    assert _builders("view=") == _builders("version=") == ["sinks.offline.store"]


def test_every_redis_key_is_built_in_one_module():
    assert _builders("rillet:") == ["sinks.online.keys"]


def test_no_file_is_much_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 450}
    assert long == {}

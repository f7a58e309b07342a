"""One-off: move modules into rooms and rewrite every reference (imports, dotted strings, paths)."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOVES = {  # old module -> new module
    "streams.kernel.windows": "streams.windows",
    "streams.kernel.windows.lifetime": "streams.windows.lifetime",
    "streams.kernel.windows.session": "streams.windows.session",
    "streams.kernel.windows.sliding": "streams.windows.sliding",
    "streams.kernel.windows.tumbling": "streams.windows.tumbling",
    "streams.kernel.aggregations": "streams.aggregations.base",
    "streams.kernel.catalog": "streams.aggregations.catalog",
    "streams.kernel.percentiles": "streams.aggregations.percentiles",
    "streams.kernel.picks": "streams.aggregations.picks",
    "streams.kernel.time_aggregations": "streams.aggregations.over_time",
    "streams.kernel.event_columns": "streams.aggregations.columns",
    "streams.definitions": "streams.definitions.view",
    "streams.services": "streams.definitions.services",
    "streams.derived": "streams.definitions.derived",
    "streams.entity_keys": "streams.definitions.entity_keys",
    "sinks.records": "streams.kernel.records",
    "streams.kafka_log": "streams.broker.kafka_log",
    "streams.tansu": "streams.broker.tansu",
    "streams.topics": "streams.broker.topics",
    "streams.lag": "streams.broker.lag",
    "streams.dead_letters": "streams.broker.dead_letters",
    "streams.offset_gaps": "streams.broker.offset_gaps",
    "streams.producer": "streams.broker.producer",
    "streams.predecessors": "streams.broker.predecessors",
    "streams.worker": "streams.worker.app",
    "streams.batch_transport": "streams.worker.batch_transport",
    "streams.metrics": "streams.worker.metrics",
    "streams.probe": "streams.worker.probe",
    "streams.stack": "streams.stack.embedded",
    "streams.redis_cluster": "streams.stack.redis_cluster",
    "streams.cli": "streams.cli",
    "streams.demo": "streams.cli.demo",
    "streams.progress": "streams.cli.progress",
    "sinks.keys": "sinks.online.keys",
    "sinks.online": "sinks.online.store",
    "sinks.versions": "sinks.online.versions",
    "sinks.reads": "sinks.online.reads",
    "sinks.restore": "sinks.online.restore",
    "sinks.write_epochs": "sinks.online.write_epochs",
    "sinks.redis_client": "sinks.redis_client",
    "sinks.statuses": "sinks.online.statuses",
    "sinks.offline": "sinks.offline.store",
    "sinks.historical": "sinks.offline.join",
    "sinks.distributed_join": "sinks.offline.dask_join",
    "sinks.join_rows": "sinks.offline.join_rows",
    "sinks.http_api": "sinks.serve.http_api",
    "sinks.console": "sinks.serve.console",
    "sinks.served_log": "sinks.observe.served_log",
    "sinks.skew": "sinks.observe.skew",
    "streams.status": "sinks.observe.status",
}
PACKAGES = {"streams.kernel.windows"}  # moved as a folder


def path_of(module: str, package: bool = False) -> str:
    return module.replace(".", "/") + ("/__init__.py" if package else ".py")


def new_path(old: str) -> str:
    if old in PACKAGES:
        return path_of(MOVES[old], True)
    return path_of(MOVES[old], MOVES[old] == "streams.cli")


DOTTED = re.compile(r"(?<![\w.])((?:streams|sinks|replay|schemas)(?:\.\w+)+)")
PATHS = re.compile(r"(?<![\w/])((?:streams|sinks)/[\w/]+)(\.py)?")
ORDER = sorted(MOVES, key=len, reverse=True)


def remap(name: str) -> str:
    for old in ORDER:
        if name == old or name.startswith(old + "."):
            return MOVES[old] + name[len(old):]
    return name


def remap_path(match: re.Match) -> str:
    text, ext = match.group(1), match.group(2) or ""
    module = text.rstrip("/").replace("/", ".")
    if ext:
        mapped = remap(module)
        if mapped == module:
            return match.group(0)
        if module in PACKAGES or mapped == "streams.cli":
            return path_of(mapped, True)
        return mapped.replace(".", "/") + ext
    if module in PACKAGES:  # a folder
        return MOVES[module].replace(".", "/") + ("/" if text.endswith("/") else "")
    return match.group(0)


def main() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for old in sorted(MOVES):
        src = ROOT / (path_of(old, True) if old in PACKAGES else path_of(old))
        if old in PACKAGES:
            continue
        if old.startswith("streams.kernel.windows."):
            continue
        dst = ROOT / new_path(old)
        if src == dst:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "mv", str(src), str(dst)], cwd=ROOT, check=True)
    subprocess.run(["git", "mv", "streams/kernel/windows", "streams/windows"], cwd=ROOT, check=True)
    for name in files:
        path = ROOT / name
        if not path.exists():
            path = None
        if name.endswith((".py", ".md", ".toml", ".txt", ".cfg", ".yml", ".yaml")) or name in ("Makefile", ".ci/run"):
            pass
        else:
            continue
    for path in ROOT.rglob("*"):
        if ".venv" in path.parts or ".git" in path.parts or not path.is_file():
            continue
        if not (path.suffix in (".py", ".md", ".toml", ".yml", ".yaml") or path.name in ("Makefile", "run")):
            continue
        if path.name == "relayout.py":
            continue
        text = path.read_text()
        new = DOTTED.sub(lambda m: remap(m.group(1)), text)
        new = PATHS.sub(remap_path, new)
        if new != text:
            path.write_text(new)


if __name__ == "__main__":
    main()

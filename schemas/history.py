"""`rillet schemas check`: every .avsc against its earlier versions in git history.

Git history is the record of schema versions. Subjects follow Confluent's
TopicNameStrategy, as producers register them: a schema file is checked as
`<topic>-value` for the topic of every view that reads it (from the features
file). A file no view reads takes its subject from `compatibility.json` beside
the schemas (`{"subjects": {"payment.avsc": "payments-value"}, "modes":
{"payments-value": "FULL"}, "default": "BACKWARD"}`), else `<file stem>-value`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.compatibility import Incompatibility, InvalidSchemaError, Mode, check
from streams.errors import ConfigError

__all__ = ["SubjectProblem", "check_folder", "merge_base"]


@dataclass(frozen=True, slots=True)
class SubjectProblem:
    subject: str
    problem: Incompatibility

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem.path}: {self.problem.message}"


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"git {' '.join(args)} in {repo} failed: {last}")
    return result.stdout


def _repository(folder: Path) -> Path | None:
    """The git work tree holding `folder`, or None outside any."""
    result = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def merge_base(repo: Path) -> str:
    """The merge-base with main (or master), or HEAD where neither exists."""
    for branch in ("main", "master", "origin/main"):
        result = subprocess.run(["git", "-C", str(repo), "merge-base", "HEAD", branch], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.strip()
    return "HEAD"


def _versions(repo: Path, path: Path, base: str) -> list[str]:
    """The distinct texts of a file in the history reachable from `base`, oldest first."""
    relative = path.resolve().relative_to(repo.resolve())
    commits = _git(repo, "log", "--reverse", "--format=%H", base, "--", str(relative)).split()
    texts: list[str] = []
    for commit in commits:
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{relative}"], capture_output=True, text=True)
        if shown.returncode == 0 and (not texts or texts[-1] != shown.stdout):
            texts.append(shown.stdout)
    return texts


def registered_versions(registry_url: str, subject: str) -> list[dict]:
    """Every version registered under `subject`, oldest first ([] for an unknown subject)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    client = SchemaRegistryClient({"url": registry_url})
    try:
        numbers = client.get_versions(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return []
        raise ConfigError(f"schema registry: {exc.error_message}") from None
    return [json.loads(client.get_version(subject, n).schema.schema_str) for n in numbers]


def check_folder(folder: Path, base: str | None = None, registry_url: str = "",
                 readers: dict[Path, list[tuple[str, str]]] | None = None) -> tuple[list[SubjectProblem], list[str]]:
    """Check every `.avsc` in `folder` against its git history and, given a registry, its registered
    versions (which count as the latest).

    Args:
        readers: per schema file (resolved path), the (subject, view) pairs of the views reading it.

    Returns:
        The problems, and one line per subject checked saying which file it was and why that subject.
    """
    folder = folder.resolve()
    repo = _repository(folder)
    if repo is None and not registry_url:
        raise ConfigError(f"{folder} is not in a git repository, so there are no earlier versions to check against; "
                          "run it in the repository that holds the schemas, or set RILLET_SCHEMA_REGISTRY_URL to "
                          "check against the registered versions")
    base = base or (merge_base(repo) if repo else "")
    config_path = folder / "compatibility.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    problems: list[SubjectProblem] = []
    checked: list[str] = []
    for path in sorted(folder.glob("*.avsc")):
        pairs = sorted(set((readers or {}).get(path.resolve(), [])))
        if pairs:
            subjects = [(subject, f"read by view {view}") for subject, view in pairs]
        elif path.name in config.get("subjects", {}):
            subjects = [(config["subjects"][path.name], "mapped in compatibility.json")]
        else:
            subjects = [(f"{path.stem}-value", "no view reads it: subject from the file name")]
        history = _versions(repo, path, base) if repo else []  # git, once per file however many subjects read it
        for subject, why in subjects:
            mode = Mode(config.get("modes", {}).get(subject, config.get("default", "BACKWARD")))
            against = "" if repo else "; no git history: against the registry only"
            checked.append(f"{path.name} checked as {subject} ({why}; {mode.value}{against})")
            try:
                new = json.loads(path.read_text())
                previous = [json.loads(text) for text in history]
                if registry_url:
                    previous += [v for v in registered_versions(registry_url, subject) if v not in previous]
                found = check(new, previous, mode)
            except (json.JSONDecodeError, InvalidSchemaError) as exc:
                found = [Incompatibility("/", f"invalid schema: {exc}", "invalid")]
            problems += [SubjectProblem(subject, p) for p in found]
    return problems, checked


def deployed_schemas(settings: Any, subject: str) -> tuple[list[dict], str]:
    """The schemas registered under `subject`, oldest first, and its compatibility level: from the registry
    at RILLET_SCHEMA_REGISTRY_URL (its level, BACKWARD by default), or the Redis store (BACKWARD)."""
    if settings.schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            level = str(SchemaRegistryClient({"url": settings.schema_registry_url}).get_compatibility(subject))
        except SchemaRegistryError:
            level = "BACKWARD"
        return registered_versions(settings.schema_registry_url, subject), level.rsplit(".", 1)[-1].upper()
    from schemas.store import RedisSchemaStore
    from sinks.redis_client import connect_redis

    return RedisSchemaStore(connect_redis(settings)).subject_schemas(subject), "BACKWARD"

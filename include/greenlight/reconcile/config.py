"""Load and validate ``reconcile.yaml``: which DVC remotes, MLflow stores and pipelines to reconcile.

The minimal valid file is::

    report_uri: s3://<bucket>/_greenlight/reconcile/
    targets:
      - {name: datasets, kind: dvc, repo: /path/to/git/repo}

Every error names the key at fault (``targets[1].fallback_remotes[0]: ...``). Unknown keys are
errors, never ignored: a typo such as ``fallback_remote`` would otherwise silently disable a repair
route.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.promotion.config import check_keys
from greenlight.storage.s3 import S3Uri, parse_s3_uri

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "reconcile.yaml"
CONFIG_ENV = "GREENLIGHT_RECONCILE_CONFIG"
KINDS = ("dvc", "mlflow", "git_dvc")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

_TOP_KEYS = {"report_uri", "workers", "targets"}
_COMMON = {"name", "kind", "description"}
_KEYS = {
    "dvc": _COMMON | {"repo", "rev", "remote", "remote_name", "cache_dir", "fallback_remotes"},
    "git_dvc": _COMMON | {"repo", "rev"},
    "mlflow": _COMMON | {"tracking_uri", "experiments", "registered_models", "restore_dir"},
}


@dataclass(frozen=True)
class Target:
    """One thing to reconcile. Fields that do not apply to ``kind`` keep their defaults."""

    name: str
    kind: str
    description: str = ""
    # dvc / git_dvc
    repo: str = ""
    rev: str = "HEAD"
    remote: S3Uri | None = None  # None: the repo's remote at ``rev`` (``.dvc/config``)
    remote_name: str | None = None
    cache_dir: str | None = None  # None: <repo>/.dvc/cache when the repo is a local checkout
    fallback_remotes: tuple[S3Uri, ...] = ()
    # mlflow
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI / the Airflow connection
    experiments: tuple[str, ...] = ()  # () = every active experiment
    registered_models: str | tuple[str, ...] = "all"  # "all", "none" or a tuple of names
    restore_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind in ("dvc", "git_dvc"):
            out.update(repo=self.repo, rev=self.rev)
        if self.kind == "dvc":
            out.update(
                remote=str(self.remote) if self.remote else None,
                remote_name=self.remote_name,
                cache_dir=self.cache_dir,
                fallback_remotes=[str(f) for f in self.fallback_remotes],
            )
        if self.kind == "mlflow":
            out.update(
                experiments=list(self.experiments),
                registered_models=self.registered_models
                if isinstance(self.registered_models, str)
                else list(self.registered_models),
                restore_dir=self.restore_dir,
            )
        return out


@dataclass(frozen=True)
class ReconcileConfig:
    targets: tuple[Target, ...]
    report_uri: str  # s3:// URI (with trailing /) or a local folder
    workers: int = 32
    path: str = ""

    def select(self, only: list[str] | None) -> ReconcileConfig:
        """Keep the targets named in ``only``; an unknown name is an error naming the known ones."""
        if not only:
            return self
        names = [t.name for t in self.targets]
        for item in only:
            if item not in names:
                close = difflib.get_close_matches(str(item), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"only: {item!r} is not a configured target{hint}; configured: {', '.join(names)}")
        return replace(self, targets=tuple(t for t in self.targets if t.name in only))

    def target(self, name: str) -> Target:
        return self.select([name]).targets[0]


def _string(value: Any, where: str, *, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _local_or_url(value: Any, where: str, base: Path) -> str:
    text = _string(value, where)
    if _is_url(text):
        return text
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else (base / path).resolve())


def _is_url(text: str) -> bool:
    return "://" in text or re.match(r"^[\w.-]+@[\w.-]+:", text) is not None


def _target(entry: Any, index: int, base: Path) -> Target:
    where = f"targets[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with 'name' and 'kind', got {entry!r}")
    for key in ("name", "kind"):
        if key not in entry:
            raise ConfigError(f"{where}: missing required key {key!r}")
    name = entry["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: {name!r} must be 1-100 letters, digits, '_', '.' or '-'")
    where = f"targets[{index}] ({name})"
    kind = entry["kind"]
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    check_keys(entry, _KEYS[kind], where)
    values: dict[str, Any] = {"name": name, "kind": kind}
    if "description" in entry:
        values["description"] = str(entry["description"] or "")
    if kind in ("dvc", "git_dvc"):
        if "repo" not in entry:
            raise ConfigError(f"{where}: missing required key 'repo' (a local git checkout or a git URL)")
        values["repo"] = _local_or_url(entry["repo"], f"{where}.repo", base)
        values["rev"] = _string(entry.get("rev", "HEAD"), f"{where}.rev")
        if values["rev"].startswith("-"):
            raise ConfigError(f"{where}.rev: {values['rev']!r} is not a git revision")
    if kind == "dvc":
        if entry.get("remote") is not None:
            values["remote"] = parse_s3_uri(entry["remote"], what=f"{where}.remote")
        if entry.get("remote_name") is not None:
            values["remote_name"] = _string(entry["remote_name"], f"{where}.remote_name")
            if "remote" in values:
                raise ConfigError(
                    f"{where}: give either 'remote' (a URI) or 'remote_name' (from .dvc/config), not both"
                )
        if entry.get("cache_dir") is not None:
            values["cache_dir"] = _local_or_url(entry["cache_dir"], f"{where}.cache_dir", base)
        fallbacks = entry.get("fallback_remotes") or []
        if not isinstance(fallbacks, list):
            raise ConfigError(f"{where}.fallback_remotes: expected a list of s3:// URIs, got {fallbacks!r}")
        values["fallback_remotes"] = tuple(
            parse_s3_uri(f, what=f"{where}.fallback_remotes[{i}]") for i, f in enumerate(fallbacks)
        )
        if values.get("remote") and values["remote"] in values["fallback_remotes"]:
            raise ConfigError(f"{where}.fallback_remotes: {values['remote']} is the remote itself")
    if kind == "mlflow":
        if entry.get("tracking_uri") is not None:
            values["tracking_uri"] = _string(entry["tracking_uri"], f"{where}.tracking_uri")
        values["experiments"] = _names(entry.get("experiments"), f"{where}.experiments")
        models = entry.get("registered_models", "all")
        if isinstance(models, str):
            if models not in ("all", "none"):
                raise ConfigError(f"{where}.registered_models: expected 'all', 'none' or a list, got {models!r}")
        else:
            models = _names(models, f"{where}.registered_models")
        values["registered_models"] = models
        if entry.get("restore_dir") is not None:
            values["restore_dir"] = _local_or_url(entry["restore_dir"], f"{where}.restore_dir", base)
    return Target(**values)


def parse_config(raw: Any, *, path: str = "<config>") -> ReconcileConfig:
    """Validate a parsed YAML document and return a :class:`ReconcileConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'targets' and 'report_uri' at the top level")
    check_keys(raw, _TOP_KEYS, path)
    for key in ("targets", "report_uri"):
        if key not in raw:
            raise ConfigError(f"{path}: missing required key {key!r}")
    entries = raw["targets"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'targets' must be a non-empty list")
    base = Path(path).parent if path != "<config>" else Path.cwd()
    targets = [_target(entry, i, base) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for i, t in enumerate(targets):
        if t.name in seen:
            raise ConfigError(f"targets[{i}].name: {t.name!r} is used twice")
        seen.add(t.name)
    report = raw["report_uri"]
    if isinstance(report, str) and report.strip().startswith("s3://"):
        report_uri = str(parse_s3_uri(report, what="report_uri"))
    else:
        report_uri = _local_or_url(report, "report_uri", base)
    workers = raw.get("workers", 32)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ConfigError(f"{path}: 'workers' must be a whole number from 1 to 256, got {workers!r}")
    return ReconcileConfig(tuple(targets), report_uri, workers, path)


def load_config(path: str | os.PathLike | None = None) -> ReconcileConfig:
    """Read ``path`` (default ``$GREENLIGHT_RECONCILE_CONFIG``, else the packaged file)."""
    from greenlight.promotion.config import read_yaml

    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(chosen, "reconcile config"), path=str(chosen))

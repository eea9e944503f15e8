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
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from greenlight.configmodel import StrictModel, validate
from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.storage.s3 import S3Uri, parse_s3_uri
from greenlight.yamlfile import read_yaml

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "reconcile.yaml"
CONFIG_ENV = "GREENLIGHT_RECONCILE_CONFIG"
KINDS = ("dvc", "mlflow", "git_dvc")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


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


# ------------------------------------------------------------------------------ the file's schema
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _revision(value: str) -> str:
    if value.startswith("-"):
        raise ValueError(f"{value!r} is not a git revision")
    return value


def _models(value: Any) -> str | tuple[str, ...]:
    if value in ("all", "none"):
        return value
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(dict.fromkeys(v.strip() for v in value))
    raise ValueError(f"expected 'all', 'none' or a list of names, got {value!r}")


class _TargetModel(StrictModel):
    name: Annotated[str, StringConstraints(pattern=_NAME.pattern)]
    description: str | None = None


class _RepoTarget(_TargetModel):
    repo: NonEmpty
    rev: Annotated[NonEmpty, AfterValidator(_revision)] = "HEAD"


class DvcTargetModel(_RepoTarget):
    kind: Literal["dvc"]
    remote: str | None = None
    remote_name: NonEmpty | None = None
    cache_dir: NonEmpty | None = None
    fallback_remotes: list[str] | None = None

    @model_validator(mode="after")
    def _one_remote(self) -> DvcTargetModel:
        if self.remote is not None and self.remote_name is not None:
            raise ValueError("give either 'remote' (a URI) or 'remote_name' (from .dvc/config), not both")
        return self


class GitDvcTargetModel(_RepoTarget):
    kind: Literal["git_dvc"]


class MlflowTargetModel(_TargetModel):
    kind: Literal["mlflow"]
    tracking_uri: NonEmpty | None = None
    experiments: list[NonEmpty] | None = None
    registered_models: Annotated[Any, AfterValidator(_models)] = "all"
    restore_dir: NonEmpty | None = None


TargetModel = Annotated[DvcTargetModel | GitDvcTargetModel | MlflowTargetModel, Field(discriminator="kind")]


class ReconcileFile(StrictModel):
    """The whole ``reconcile.yaml``."""

    report_uri: NonEmpty
    workers: Annotated[int, Field(ge=1, le=256)] = 32
    targets: Annotated[list[TargetModel], Field(min_length=1)]


MESSAGES = {
    "": "{file}: expected a mapping with 'targets' and 'report_uri' at the top level",
    "targets": "{file}: 'targets' must be a non-empty list, got {value!r}",
    "targets[]": "{where}: expected a mapping with 'name' and 'kind', got {value!r}",
    "workers": "{file}: 'workers' must be a whole number from 1 to 256, got {value!r}",
    "report_uri": "report_uri: expected an s3:// URI or a local folder, got {value!r}",
    "name": "{where}: {value!r} must be 1-100 letters, digits, '_', '.' or '-'",
    "description": "{where}: expected a string, got {value!r}",
    "remote": "{where}: expected an s3:// URI string, got {value!r}",
    "fallback_remotes": "{where}: expected a list of s3:// URIs, got {value!r}",
    "experiments": "{where}: expected a list of names, got {value!r}",
    "missing:repo": " (a local git checkout or a git URL)",
}
for _key in ("repo", "rev", "remote_name", "cache_dir", "tracking_uri", "restore_dir"):
    MESSAGES[_key] = "{where}: expected a non-empty string, got {value!r}"


# --------------------------------------------------------------------------- from file to objects
def _local_or_url(text: str, base: Path) -> str:
    if _is_url(text):
        return text
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else (base / path).resolve())


def _is_url(text: str) -> bool:
    return "://" in text or re.match(r"^[\w.-]+@[\w.-]+:", text) is not None


def _target(entry: DvcTargetModel | GitDvcTargetModel | MlflowTargetModel, index: int, base: Path) -> Target:
    where = f"targets[{index}] ({entry.name})"
    values: dict[str, Any] = {"name": entry.name, "kind": entry.kind, "description": entry.description or ""}
    if isinstance(entry, (DvcTargetModel, GitDvcTargetModel)):
        values.update(repo=_local_or_url(entry.repo, base), rev=entry.rev)
    if isinstance(entry, DvcTargetModel):
        if entry.remote is not None:
            values["remote"] = parse_s3_uri(entry.remote, what=f"{where}.remote")
        values["remote_name"] = entry.remote_name
        if entry.cache_dir is not None:
            values["cache_dir"] = _local_or_url(entry.cache_dir, base)
        values["fallback_remotes"] = tuple(
            parse_s3_uri(f, what=f"{where}.fallback_remotes[{i}]") for i, f in enumerate(entry.fallback_remotes or ())
        )
        if values.get("remote") and values["remote"] in values["fallback_remotes"]:
            raise ConfigError(f"{where}.fallback_remotes: {values['remote']} is the remote itself")
    if isinstance(entry, MlflowTargetModel):
        values.update(
            tracking_uri=entry.tracking_uri,
            experiments=tuple(dict.fromkeys(entry.experiments or ())),
            registered_models=entry.registered_models,
        )
        if entry.restore_dir is not None:
            values["restore_dir"] = _local_or_url(entry.restore_dir, base)
    return Target(**values)


def parse_config(raw: Any, *, path: str = "<config>") -> ReconcileConfig:
    """Validate a parsed YAML document and return a :class:`ReconcileConfig`."""

    def label(loc: tuple) -> str | None:
        """``targets[1]`` is shown as ``targets[1] (name)`` once its name is known to be valid."""
        if len(loc) == 2 and loc[0] == "targets" and isinstance(raw, dict) and isinstance(raw.get("targets"), list):
            entry = raw["targets"][loc[1]]
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and _NAME.match(name):
                return f"targets[{loc[1]}] ({name})"
        return None

    doc = validate(ReconcileFile, raw, file=path, messages=MESSAGES, label=label)
    base = Path(path).parent if path != "<config>" else Path.cwd()
    targets = [_target(entry, i, base) for i, entry in enumerate(doc.targets)]
    seen: set[str] = set()
    for i, t in enumerate(targets):
        if t.name in seen:
            raise ConfigError(f"targets[{i}].name: {t.name!r} is used twice")
        seen.add(t.name)
    if doc.report_uri.startswith("s3://"):
        report_uri = str(parse_s3_uri(doc.report_uri, what="report_uri"))
    else:
        report_uri = _local_or_url(doc.report_uri, base)
    return ReconcileConfig(tuple(targets), report_uri, doc.workers, path)


def load_config(path: str | os.PathLike | None = None) -> ReconcileConfig:
    """Read ``path`` (default ``$GREENLIGHT_RECONCILE_CONFIG``, else the packaged file)."""
    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(chosen, "reconcile config"), path=str(chosen))

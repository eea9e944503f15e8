"""The datasets config's data: what ``datasets.yaml`` may contain and what it resolves to.

* **File shape** (pydantic v2 models, ``extra="forbid"``): :class:`FileModel`, :class:`DatasetModel`,
  :class:`StagedModel`; :func:`shape_problems` turns a ``ValidationError`` into :class:`Problem` s
  naming each key path, e.g. ``datasets[1].staged[0].version``.
* **Resolved config** (frozen dataclasses, what DAG factories, jobs and ops read):
  :class:`DatasetsConfig` → :class:`Dataset` → :class:`VersionSpec`, :class:`Job`.
* **Errors**: :class:`Problem` (key path, dataset, version, rule) and :class:`DatasetConfigError`
  listing them all (exit 2).

The runbook 002 rules that turn a :class:`FileModel` into a :class:`DatasetsConfig` live in
:mod:`greenlight.datasets.rules`; loading a file in :mod:`greenlight.datasets.config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from greenlight.datasets import naming
from greenlight.errors import ConfigError

DEFAULT_STORE = "{base}/{dataset_id}/v{version}.{ext}"
CALLABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

Version = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, pattern=r"^[0-9][0-9A-Za-z.-]*$", max_length=64
    ),  # no leading "v": the convention adds it
]
DatasetId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
JobSpec = Text | Annotated[list[Text], Field(min_length=1)]


def _job_spec(value: Any) -> Any:
    """A job is a dotted callable ``package.module:function`` or a command (string or argv list)."""
    if isinstance(value, str):
        text = value.strip()
        if " " not in text and ":" in text and not CALLABLE.match(text):
            raise ValueError(f"{text!r} is neither a 'package.module:function' callable nor a command")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StagedModel(_Model):
    version: Version
    schedule_offset_minutes: int | None = Field(default=None, ge=0, le=59)
    image: Text | None = None
    code_ref: Text | None = None
    template_version: Version | None = None
    template: Text | None = None


class DatasetModel(_Model):
    id: DatasetId
    primary: Version
    staged: list[StagedModel] = Field(default_factory=list)
    schedule: Text | None = None
    store: Text | None = None
    base: Text | None = None
    ext: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]+$")] = "zarr"
    update: JobSpec
    validate_job: JobSpec = Field(alias="validate")
    owner: Text | None = None
    tags: list[Annotated[str, StringConstraints(pattern=r"^[\w.:/-]{1,100}$")]] = Field(default_factory=list)
    description: str = ""
    template_version: Version | None = None
    template: Text | None = None
    image: Text | None = None
    code_ref: Text | None = None
    kubernetes: bool = False
    pool_slots: int = Field(default=1, ge=1, le=128)

    @field_validator("update", "validate_job")
    @classmethod
    def _jobs(cls, value: Any) -> Any:
        return _job_spec(value)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value in PRESETS or value.lower() == "none":
            return None if value is None or value.lower() == "none" else value
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a 5-field cron expression, an @preset or null (manual runs only)")
        return value


class FileModel(_Model):
    base: Text
    store: Text = DEFAULT_STORE
    pointer_root: Text | None = None
    owner: Text = "platform"
    staged_offset_minutes: int = Field(default=5, ge=0, le=59)
    datasets: list[DatasetModel] = Field(default_factory=list)


# ------------------------------------------------------------------------------ resolved config


@dataclass(frozen=True)
class Job:
    """An update or validate job: a callable ``module:function`` or a command."""

    spec: str | tuple[str, ...]

    @property
    def is_callable(self) -> bool:
        return isinstance(self.spec, str) and bool(CALLABLE.match(self.spec))

    def __str__(self) -> str:
        return self.spec if isinstance(self.spec, str) else " ".join(self.spec)


@dataclass(frozen=True)
class VersionSpec:
    """One version of one dataset, primary or staged, with everything its DAGs need."""

    dataset_id: str
    version: str
    role: Literal["primary", "staged"]
    store_path: str
    schedule: str | None
    offset_minutes: int
    where: str  # key path in the file, e.g. datasets[1].staged[0]
    image: str | None = None
    code_ref: str | None = None

    @property
    def staged(self) -> bool:
        return self.role == naming.STAGED

    def dag_id(self, job: str) -> str:
        return naming.dag_id(self.dataset_id, self.version, job, staged=self.staged)

    @property
    def pool(self) -> str:
        return naming.pool_name(self.dataset_id, self.version)

    def kubernetes_name(self, job: str) -> str:
        return naming.kubernetes_name(self.dataset_id, self.version, job, staged=self.staged)


@dataclass(frozen=True)
class Dataset:
    id: str
    owner: str
    tags: tuple[str, ...]
    update: Job
    validate: Job
    primary: VersionSpec
    staged: tuple[VersionSpec, ...]
    where: str
    ext: str
    description: str = ""
    kubernetes: bool = False
    pool_slots: int = 1

    @property
    def versions(self) -> tuple[VersionSpec, ...]:
        return (self.primary, *self.staged)

    def job(self, name: str) -> Job:
        return {"update": self.update, "validate": self.validate}[name]

    def version(self, version: str) -> VersionSpec:
        """The configured primary or staged entry for ``version`` (rule ``known-version``)."""
        for spec in self.versions:
            if spec.version == version:
                return spec
        known = ", ".join(f"{v.version} ({v.role})" for v in self.versions)
        raise ConfigError(
            f"dataset {self.id!r} version {version!r}: not configured (configured: {known}) [rule: known-version]"
        )


@dataclass(frozen=True)
class DatasetsConfig:
    datasets: tuple[Dataset, ...]
    pointer_root: str
    path: str = ""
    base: str = ""

    def dataset(self, dataset_id: str) -> Dataset:
        """The dataset ``dataset_id`` (rule ``known-dataset``: an unknown id is refused)."""
        for ds in self.datasets:
            if ds.id == dataset_id:
                return ds
        known = ", ".join(d.id for d in self.datasets) or "none"
        raise ConfigError(
            f"{self.path}: dataset {dataset_id!r}: no such dataset in the config (configured: {known}) "
            "[rule: known-dataset]"
        )

    def versions(self) -> list[VersionSpec]:
        return [v for ds in self.datasets for v in ds.versions]


# ------------------------------------------------------------------------------ errors


@dataclass(frozen=True)
class Problem:
    where: str
    dataset_id: str | None
    version: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        who = []
        if self.dataset_id:
            who.append(f"dataset {self.dataset_id!r}")
        if self.version:
            who.append(f"version {self.version!r}")
        subject = f" {' '.join(who)}:" if who else ""
        return f"{self.where}:{subject} {self.message} [rule: {self.rule}]"


class DatasetConfigError(ConfigError):
    """The datasets config breaks one or more rules; ``problems`` lists each (exit 2)."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {count} in the datasets config:\n{lines}")


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def _context(raw: Any, loc: tuple[Any, ...]) -> tuple[str | None, str | None]:
    """The dataset id and version an error location belongs to, read from the raw document."""
    dataset_id = version = None
    try:
        if loc[:1] == ("datasets",) and len(loc) > 1:
            entry = raw["datasets"][loc[1]]
            dataset_id = entry.get("id") if isinstance(entry, dict) else None
            version = entry.get("primary") if isinstance(entry, dict) else None
            if loc[2:3] == ("staged",) and len(loc) > 3:
                staged = entry["staged"][loc[3]]
                version = staged.get("version") if isinstance(staged, dict) else None
            elif loc[2:3] != ("primary",) and loc[2:3] not in (("template_version",), ("template",)):
                version = None
    except (KeyError, IndexError, TypeError):
        pass
    return (str(dataset_id) if dataset_id is not None else None, str(version) if version is not None else None)


def shape_problems(raw: Any, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # A union (callable or argv list) reports one error per branch: keep the location only.
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p == "str" or "[" in p)))
        dataset_id, version = _context(raw, loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif "input" in err and err["type"] != "missing":
            message += f" (got {err['input']!r})"
        rule = "unknown-key" if err["type"] == "extra_forbidden" else "shape"
        problems.append(Problem(_loc(loc), dataset_id, version, rule, message))
    unique: list[Problem] = []
    for p in problems:
        if p not in unique:
            unique.append(p)
    return unique

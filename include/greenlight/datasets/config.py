"""Load and validate ``include/config/datasets.yaml``: each dataset's primary and staged versions.

Two layers, both refused before anything runs:

1. **Shape** (pydantic v2 models, ``extra="forbid"``): unknown keys, wrong types, bad versions or
   callables. Each error names its key path, e.g. ``datasets[1].staged[0].version``.
2. **Runbook 002 rules**, each message naming the key path, dataset, version and rule:
   ``template-version`` (a version equals the ``dataset_version`` its template declares),
   ``staged-differs-from-primary``, ``unique-version``, ``unique-store-path`` (no two entries, in
   any dataset, resolve to the same or a nested store path), ``airflow-id`` (generated DAG ids and
   pools), ``dns-label`` (Kubernetes names, 63 characters, when the jobs run as pods),
   ``unique-dataset-id``, ``store-template``, ``schedule-offset``; ``known-dataset`` for a
   ``--dataset-id`` that is not configured.

All problems are reported together in one :class:`~greenlight.errors.ConfigError` (one import
error in Airflow, one exit 2 on the CLI). Cheap enough for DAG parse time: PyYAML, pydantic and
small local template files only.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from greenlight.datasets import naming
from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.yamlfile import read_yaml

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "datasets.yaml"
CONFIG_ENV = "GREENLIGHT_DATASETS_CONFIG"
DEFAULT_STORE = "{base}/{dataset_id}/v{version}.{ext}"
STORE_FIELDS = {"base", "dataset_id", "version", "ext"}
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


def _shape_problems(raw: Any, exc: ValidationError) -> list[Problem]:
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


# ------------------------------------------------------------------------------ schedules


def offset_cron(cron: str, minutes: int) -> str:
    """``cron`` shifted ``minutes`` later (0-59), for staging DAGs that must not hit the upstream
    sources at the same instant as the primary. ValueError when the expression has no exact shift."""
    cron = PRESETS.get(cron, cron)
    if minutes == 0:
        return cron
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"{cron!r} is not a 5-field cron expression")
    minute, hour, dom, month, dow = fields
    step = re.fullmatch(r"(\*|0)/(\d+)", minute)
    if step:
        every = int(step.group(2))
        if 60 % every:
            raise ValueError(f"minute field {minute!r}: step {every} does not divide the hour")
        return " ".join([f"{minutes % every}-59/{every}", hour, dom, month, dow])
    if not re.fullmatch(r"\d+(,\d+)*", minute):
        raise ValueError(f"minute field {minute!r} is not a number, a list of numbers or */N")
    shifted = [int(m) + minutes for m in minute.split(",")]
    wraps = {m >= 60 for m in shifted}
    new_minute = ",".join(str(m % 60) for m in sorted(shifted, key=lambda m: m % 60))
    if wraps == {False} or hour == "*":
        return " ".join([new_minute, hour, dom, month, dow])
    if len(wraps) > 1:
        raise ValueError(f"minutes {minute!r} + {minutes} fall in two different hours")
    if not re.fullmatch(r"\d+(,\d+)*", hour):
        raise ValueError(f"hour field {hour!r} cannot be shifted into the next hour")
    hours = [int(h) + 1 for h in hour.split(",")]
    if any(h >= 24 for h in hours) and (dom, month, dow) != ("*", "*", "*"):
        raise ValueError("the shift crosses midnight on a schedule restricted to certain days")
    return " ".join([new_minute, ",".join(str(h % 24) for h in sorted(hours, key=lambda h: h % 24)), dom, month, dow])


# ------------------------------------------------------------------------------ templates


def template_dataset_version(path: Path) -> str | None:
    """The ``dataset_version`` a zarr template declares: a ``.zattrs`` (v2), a ``zarr.json`` (v3,
    under ``attributes``) or a consolidated ``.zmetadata`` (under ``metadata['.zattrs']``)."""
    target = path
    if target.is_dir():
        for name in ("zarr.json", ".zmetadata", ".zattrs"):
            if (target / name).is_file():
                target = target / name
                break
    doc = json.loads(target.read_text())
    for candidate in (
        doc,
        doc.get("attributes") or {},
        (doc.get("metadata") or {}).get(".zattrs") or {},
        ((doc.get("consolidated_metadata") or {}).get("metadata") or {}).get("", {}).get("attributes") or {},
    ):
        if isinstance(candidate, dict) and "dataset_version" in candidate:
            return str(candidate["dataset_version"])
    return None


def _declared_version(
    template_version: str | None, template: str | None, base_dir: Path, where: str, problems: list[Problem], ctx
) -> str | None:
    if template_version is not None:
        return template_version
    if template is None:
        return None
    path = Path(template)
    if not path.is_absolute():
        path = base_dir / path
    try:
        declared = template_dataset_version(path)
    except (OSError, ValueError, AttributeError) as exc:
        problems.append(Problem(f"{where}.template", *ctx, "template-version", f"cannot read template {path}: {exc}"))
        return None
    if declared is None:
        problems.append(
            Problem(f"{where}.template", *ctx, "template-version", f"template {path} declares no dataset_version")
        )
    return declared


# ------------------------------------------------------------------------------ resolve + rules


def _store_path(template: str, base: str, dataset_id: str, version: str, ext: str) -> str:
    return template.format(base=base.rstrip("/"), dataset_id=dataset_id, version=version, ext=ext)


def _store_template_problem(template: str) -> str | None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        return f"store template {template!r} is not a valid format string: {exc}"
    unknown = names - STORE_FIELDS
    if unknown:
        return (
            f"store template {template!r} uses unknown placeholder(s) {sorted(unknown)}; "
            f"allowed: {sorted(STORE_FIELDS)}"
        )
    if "version" not in names:
        return f"store template {template!r} has no {{version}}: every version would write the same path"
    return None


def _default_pointer_root(base: str) -> str:
    if base.startswith("s3://"):
        bucket = base[5:].split("/", 1)[0]
        return f"s3://{bucket}/_greenlight/datasets/"
    return str(Path(base) / "_greenlight" / "datasets")


def _store_clashes(
    v: VersionSpec, stores: dict[str, VersionSpec], parents: dict[str, VersionSpec]
) -> list[tuple[VersionSpec, bool]]:
    """Entries whose store path equals, contains or lies inside ``v``'s; then records ``v``.

    Linear in the number of entries (a dict lookup per path segment), so 150 versions cost nothing."""
    parts = v.store_path.rstrip("/").split("/")
    norm = "/".join(parts)
    clashes: list[tuple[VersionSpec, bool]] = []
    if norm in stores:
        clashes.append((stores[norm], True))
    elif norm in parents:
        clashes.append((parents[norm], False))
    for k in range(1, len(parts)):
        ancestor = "/".join(parts[:k])
        if ancestor in stores:
            clashes.append((stores[ancestor], False))
        parents.setdefault(ancestor, v)
    stores.setdefault(norm, v)
    return clashes


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _version_spec(
    ds: DatasetModel,
    template: str,
    base: str,
    version: str,
    role: str,
    where: str,
    offset: int,
    image: str | None,
    code_ref: str | None,
    problems: list[Problem],
) -> VersionSpec:
    schedule = PRESETS.get(ds.schedule, ds.schedule) if ds.schedule else None
    if schedule and offset:
        try:
            schedule = offset_cron(schedule, offset)
        except ValueError as exc:
            problems.append(
                Problem(
                    f"{where}.schedule_offset_minutes",
                    ds.id,
                    version,
                    "schedule-offset",
                    f"cannot offset schedule {ds.schedule!r} by {offset} min: {exc}; change the dataset's "
                    "schedule or set schedule_offset_minutes: 0",
                )
            )
    return VersionSpec(
        dataset_id=ds.id,
        version=version,
        role=role,  # type: ignore[arg-type]
        store_path=_store_path(template, base, ds.id, version, ds.ext),
        schedule=schedule,
        offset_minutes=offset,
        where=where,
        image=image,
        code_ref=code_ref,
    )


def resolve(model: FileModel, *, path: str = "<config>", base_dir: Path | None = None) -> DatasetsConfig:
    """Apply defaults and every runbook rule; raise one :class:`DatasetConfigError` listing all problems."""
    base_dir = base_dir or Path(path).resolve().parent
    problems: list[Problem] = []
    datasets: list[Dataset] = []
    seen_ids: dict[str, str] = {}
    stores: dict[str, VersionSpec] = {}  # normalised store path -> entry
    store_parents: dict[str, VersionSpec] = {}  # every proper parent of a store path -> entry
    dag_ids: dict[str, str] = {}

    top_store_problem = _store_template_problem(model.store)
    if top_store_problem:
        problems.append(Problem("store", None, None, "store-template", top_store_problem))

    for i, ds in enumerate(model.datasets):
        where = f"datasets[{i}]"
        if ds.id in seen_ids:
            problems.append(
                Problem(f"{where}.id", ds.id, None, "unique-dataset-id", f"also configured at {seen_ids[ds.id]}")
            )
            continue
        seen_ids[ds.id] = where
        template = ds.store or model.store
        if ds.store:
            store_problem = _store_template_problem(ds.store)
            if store_problem:
                problems.append(Problem(f"{where}.store", ds.id, None, "store-template", store_problem))
                continue
        elif top_store_problem:
            continue
        base = ds.base or model.base

        primary = _version_spec(
            ds, template, base, ds.primary, naming.PRIMARY, where, 0, ds.image, ds.code_ref, problems
        )
        declared = _declared_version(ds.template_version, ds.template, base_dir, where, problems, (ds.id, ds.primary))
        if declared is not None and declared != ds.primary:
            key = "template_version" if ds.template_version is not None else "template"
            problems.append(
                Problem(
                    f"{where}.primary",
                    ds.id,
                    ds.primary,
                    "template-version",
                    f"the primary version differs from the version its template declares ({key}: {declared!r})",
                )
            )
        staged: list[VersionSpec] = []
        seen_versions = {ds.primary: f"{where}.primary"}
        for j, st in enumerate(ds.staged):
            st_where = f"{where}.staged[{j}]"
            if st.version == ds.primary:
                problems.append(
                    Problem(
                        f"{st_where}.version",
                        ds.id,
                        st.version,
                        "staged-differs-from-primary",
                        "a staged version must differ from the primary version: both would write the same "
                        "store path (promote the staged version, or bump its version)",
                    )
                )
                continue
            if st.version in seen_versions:
                problems.append(
                    Problem(
                        f"{st_where}.version",
                        ds.id,
                        st.version,
                        "unique-version",
                        f"already configured at {seen_versions[st.version]}",
                    )
                )
                continue
            seen_versions[st.version] = f"{st_where}.version"
            declared = _declared_version(
                st.template_version, st.template, base_dir, st_where, problems, (ds.id, st.version)
            )
            if declared is not None and declared != st.version:
                key = "template_version" if st.template_version is not None else "template"
                problems.append(
                    Problem(
                        f"{st_where}.version",
                        ds.id,
                        st.version,
                        "template-version",
                        f"the staged version differs from the version its template declares ({key}: {declared!r})",
                    )
                )
            offset = st.schedule_offset_minutes
            if offset is None:
                offset = min(59, model.staged_offset_minutes * (j + 1))
            staged.append(
                _version_spec(
                    ds, template, base, st.version, naming.STAGED, st_where, offset, st.image, st.code_ref, problems
                )
            )

        dataset = Dataset(
            id=ds.id,
            owner=ds.owner or model.owner,
            tags=tuple(dict.fromkeys(ds.tags)),
            update=Job(ds.update if isinstance(ds.update, str) else tuple(ds.update)),
            validate=Job(ds.validate_job if isinstance(ds.validate_job, str) else tuple(ds.validate_job)),
            primary=primary,
            staged=tuple(staged),
            where=where,
            ext=ds.ext,
            description=ds.description,
            kubernetes=ds.kubernetes,
            pool_slots=ds.pool_slots,
        )
        datasets.append(dataset)

        for v in dataset.versions:
            key = f"{v.where}.version" if v.staged else f"{v.where}.primary"
            for other, same in _store_clashes(v, stores, store_parents):
                problems.append(
                    Problem(
                        key,
                        ds.id,
                        v.version,
                        "unique-store-path",
                        f"store path {v.store_path} and {other.store_path} of dataset {other.dataset_id!r} version "
                        f"{other.version!r} ({other.where}) are {'the same store path' if same else 'nested'}: "
                        "one would overwrite the other",
                    )
                )
            names = [v.dag_id(job) for job in naming.JOBS] + [v.pool]
            for name in names:
                problem = naming.airflow_id_problem(name)
                if problem:
                    problems.append(
                        Problem(key, ds.id, v.version, "airflow-id", f"generated Airflow id {name!r}: {problem}")
                    )
                elif name in dag_ids and name != v.pool:
                    problems.append(
                        Problem(
                            key, ds.id, v.version, "airflow-id", f"DAG id {name!r} is also generated by {dag_ids[name]}"
                        )
                    )
                dag_ids.setdefault(name, key)
            if dataset.kubernetes or v.image:
                for job in naming.JOBS:
                    name = v.kubernetes_name(job)
                    problem = naming.dns_label_problem(name)
                    if problem:
                        problems.append(
                            Problem(key, ds.id, v.version, "dns-label", f"Kubernetes name {name!r}: {problem}")
                        )

    if problems:
        raise DatasetConfigError(path, problems)
    pointer_root = model.pointer_root or _default_pointer_root(model.base)
    return DatasetsConfig(tuple(datasets), pointer_root, path, model.base)


def parse_config(raw: Any, *, path: str = "<config>", base_dir: Path | None = None) -> DatasetsConfig:
    if not isinstance(raw, dict):
        raise DatasetConfigError(
            path, [Problem("<top level>", None, None, "shape", "expected a mapping with 'base' and 'datasets'")]
        )
    try:
        model = FileModel.model_validate(raw)
    except ValidationError as exc:
        raise DatasetConfigError(path, _shape_problems(raw, exc)) from None
    return resolve(model, path=path, base_dir=base_dir)


def config_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike | None = None) -> DatasetsConfig:
    """Read and validate the datasets config (``$GREENLIGHT_DATASETS_CONFIG`` or the packaged one)."""
    resolved = config_path(path)
    return parse_config(read_yaml(resolved, "datasets config"), path=str(resolved))


def check_callables(config: DatasetsConfig) -> list[Problem]:
    """Import every callable job (CLI ``check`` only: imports may be heavy, never at parse time)."""
    import importlib

    problems = []
    for ds in config.datasets:
        for name in naming.JOBS:
            job = ds.job(name)
            if not job.is_callable:
                continue
            module, _, func = str(job.spec).partition(":")
            where = f"{ds.where}.{name}"
            try:
                target = getattr(importlib.import_module(module), func, None)
            except ImportError as exc:
                problems.append(Problem(where, ds.id, None, "callable", f"cannot import {module!r}: {exc}"))
                continue
            if not callable(target):
                problems.append(Problem(where, ds.id, None, "callable", f"{module!r} has no function {func!r}"))
    return problems

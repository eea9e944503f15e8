"""Runbook 002's rules for the datasets config: resolve a :class:`~greenlight.datasets.model.FileModel`
into a :class:`~greenlight.datasets.model.DatasetsConfig`, collecting every broken rule.

Each problem names its key path, dataset, version and rule: ``template-version`` (a version equals
the ``dataset_version`` its template declares), ``staged-differs-from-primary``, ``unique-version``,
``unique-store-path`` (no two entries, in any dataset, resolve to the same or a nested store path),
``airflow-id`` (generated DAG ids and pools), ``dns-label`` (Kubernetes names, 63 characters, when
the jobs run as pods), ``unique-dataset-id``, ``store-template``, ``schedule-offset``. Also here:
:func:`offset_cron` (staged schedules shifted after the primary's) and
:func:`template_dataset_version` (the version a zarr template declares). The names themselves
come from :mod:`greenlight.datasets.naming`.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from greenlight.datasets import naming
from greenlight.datasets.model import (
    PRESETS,
    Dataset,
    DatasetConfigError,
    DatasetModel,
    DatasetsConfig,
    FileModel,
    Job,
    Problem,
    VersionSpec,
)

STORE_FIELDS = {"base", "dataset_id", "version", "ext"}


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


def overlaps(a: str, b: str) -> bool:
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

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

The shape is defined in :mod:`greenlight.datasets.model`, the rules in
:mod:`greenlight.datasets.rules`; this module reads the file and runs both.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from greenlight.datasets import naming
from greenlight.datasets.model import DatasetConfigError, DatasetsConfig, FileModel, Problem, shape_problems
from greenlight.datasets.rules import resolve
from greenlight.paths import INCLUDE_DIR
from greenlight.yamlfile import read_yaml

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "datasets.yaml"
CONFIG_ENV = "GREENLIGHT_DATASETS_CONFIG"


def parse_config(raw: Any, *, path: str = "<config>", base_dir: Path | None = None) -> DatasetsConfig:
    if not isinstance(raw, dict):
        raise DatasetConfigError(
            path, [Problem("<top level>", None, None, "shape", "expected a mapping with 'base' and 'datasets'")]
        )
    try:
        model = FileModel.model_validate(raw)
    except ValidationError as exc:
        raise DatasetConfigError(path, shape_problems(raw, exc)) from None
    return resolve(model, path=path, base_dir=base_dir)


def config_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike | None = None) -> DatasetsConfig:
    """Read and validate the datasets config (``$GREENLIGHT_DATASETS_CONFIG`` or the packaged one)."""
    resolved = config_path(path)
    return parse_config(read_yaml(resolved, "datasets config"), path=str(resolved))


def check_callables(config: DatasetsConfig) -> list[Problem]:
    """Import every callable job (CLI ``check`` only: imports may be heavy, never at parse time)."""
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

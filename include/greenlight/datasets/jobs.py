"""Run one dataset version's update or validate job, after the store-path guard.

The guard runs in the task, at run time, against the config as it is *now*, not only when the DAG
was generated: the version param must be the DAG's own version, that version must still be
configured in the DAG's role, and a staged version's store path is derived from its version and
refused if it is, contains or lies inside the primary's path. So a staged DAG left running after
someone made its version the primary refuses to write instead of racing the primary DAG.

A job is a callable ``package.module:function`` called with one :class:`JobContext`, or a
command (string run by ``/bin/sh -c``, or an argv list) with ``{dataset_id}``, ``{version}``,
``{store_path}``, ``{role}``, ``{job}``, ``{as_of}`` (the run's date, ISO) placeholders and the same
values in ``GREENLIGHT_DATASET_*`` env vars.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from greenlight.datasets import naming
from greenlight.datasets.model import DatasetsConfig, Job, VersionSpec
from greenlight.datasets.rules import overlaps
from greenlight.errors import GreenlightError, RefusedError

log = logging.getLogger("greenlight.datasets")


class JobFailedError(GreenlightError):
    """An update job failed (exit 1); Airflow may retry it (upstream sources are flaky)."""

    kind = "failure"
    retryable = True


class DatasetValidationError(GreenlightError):
    """A validate job found the store invalid (exit 1, never retried: the data will not change)."""

    kind = "contract"


@dataclass
class JobContext:
    """What a dataset job callable receives."""

    dataset_id: str
    version: str
    role: str  # "primary" or "staged"
    job: str  # "update" or "validate"
    store_path: str
    run_id: str
    #: the partition the run is for (the run's date); None outside a scheduled/backfill run: today
    as_of: dt.date | None = None
    image: str | None = None
    code_ref: str | None = None
    s3_client_factory: Callable[[], Any] | None = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)

    def s3_client(self):
        """An S3 client from the caller (the Airflow connection in a task, env vars on the CLI)."""
        if self._client is None:
            if self.s3_client_factory is None:
                raise GreenlightError("this job runner gave no S3 client factory")
            self._client = self.s3_client_factory()
        return self._client


def guard(config: DatasetsConfig, dataset_id: str, role: str, dag_version: str, requested: str | None) -> VersionSpec:
    """The store-path guard; returns the entry to run or raises :class:`RefusedError` (no retry)."""
    dataset = config.dataset(dataset_id)
    where = f"dataset {dataset_id} v{dag_version}"
    if requested is not None and str(requested) != dag_version:
        raise RefusedError(
            where,
            f"param version={requested!r} is not this DAG's version {dag_version!r}: each DAG writes only its own "
            "version's store path",
        )
    spec = dataset.version(dag_version)
    if spec.role != role:
        if role == naming.STAGED:
            reason = (
                f"version {dag_version} is now the primary of {dataset_id}: this staged DAG must not write the "
                f"primary's store {spec.store_path} (promoted? run cleanup for the staged DAGs)"
            )
        else:
            reason = (
                f"version {dag_version} is no longer the primary of {dataset_id} (primary: {dataset.primary.version})"
            )
        raise RefusedError(where, reason)
    if spec.staged and overlaps(spec.store_path, dataset.primary.store_path):
        raise RefusedError(
            where,
            f"store path {spec.store_path} overlaps the primary's {dataset.primary.store_path}: a staged version "
            "never writes the primary's path",
        )
    return spec


def _call(job: Job, ctx: JobContext) -> Any:
    if job.is_callable:
        module, _, name = str(job.spec).partition(":")
        func = getattr(importlib.import_module(module), name)
        return func(ctx)
    values = {
        "dataset_id": ctx.dataset_id,
        "version": ctx.version,
        "store_path": ctx.store_path,
        "role": ctx.role,
        "job": ctx.job,
        "as_of": (ctx.as_of or dt.datetime.now(dt.UTC).date()).isoformat(),
    }
    env = {**os.environ, **{f"GREENLIGHT_DATASET_{k.upper()}": v for k, v in values.items()}}
    if isinstance(job.spec, str):
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        argv = ["/bin/sh", "-c", job.spec.format(**quoted)]
    else:
        argv = [part.format(**values) for part in job.spec]
    log.info("running %s", " ".join(shlex.quote(a) for a in argv))
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - configured
    for line in (proc.stdout + proc.stderr).splitlines()[-50:]:
        log.info("  | %s", line)
    if proc.returncode != 0:
        error = DatasetValidationError if ctx.job == "validate" else JobFailedError
        raise error(f"{ctx.job} of dataset {ctx.dataset_id} v{ctx.version}: command exited {proc.returncode}")
    return {"returncode": 0}


def run_job(
    config: DatasetsConfig,
    dataset_id: str,
    job: str,
    *,
    role: str,
    version: str,
    requested_version: str | None = None,
    run_id: str = "manual",
    as_of: dt.date | None = None,
    s3_client_factory: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Guard, then run ``job`` ("update" or "validate") for one configured version.

    A validate callable fails the job by raising, or by returning ``{"passed": False, "reasons": [...]}``.
    Returns ``{"dataset_id", "version", "role", "job", "store_path", "result"}``.
    """
    if job not in naming.JOBS:
        raise ValueError(f"job must be one of {naming.JOBS}, got {job!r}")
    spec = guard(config, dataset_id, role, version, requested_version)
    dataset = config.dataset(dataset_id)
    ctx = JobContext(
        dataset_id=dataset_id,
        version=version,
        role=spec.role,
        job=job,
        store_path=spec.store_path,
        run_id=run_id,
        as_of=as_of,
        image=spec.image,
        code_ref=spec.code_ref,
        s3_client_factory=s3_client_factory,
    )
    log.info("%s of dataset %s v%s (%s) -> %s", job, dataset_id, version, spec.role, spec.store_path)
    result = _call(dataset.job(job), ctx)
    if job == "validate" and isinstance(result, dict) and result.get("passed") is False:
        reasons = "; ".join(map(str, result.get("reasons") or ["no reason given"]))
        raise DatasetValidationError(f"validate of dataset {dataset_id} v{version} ({spec.store_path}): {reasons}")
    return {
        "dataset_id": dataset_id,
        "version": version,
        "role": spec.role,
        "job": job,
        "store_path": spec.store_path,
        "result": result,
    }

"""Task bodies of the generated dataset DAGs and of ``dataset_version_promotion`` /
``dataset_version_cleanup``; each calls the same library code as ``python -m greenlight datasets``.

No task touches the metadata DB: S3 through ``aws_default``, DAGs and pools through the REST API
(connection ``airflow_api``), results through XCom.

``greenlight.datasets.config`` / ``jobs`` / ``ops`` are imported inside the task bodies:
``dags/dataset_versions.py`` imports this module at parse time for every generated DAG, and jobs /
ops add ~0.16 s to it (measured after the DAG file's own imports, 2 shared cores); the config, which
that file has loaded by then, costs ``dataset_version_promotion`` / ``_cleanup`` ~0.14 s.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from greenlight.dagsupport.runtime import airflow_api, s3_client, triaged
from greenlight.datasets import naming
from greenlight.errors import RefusedError

log = logging.getLogger("greenlight.tasks.datasets")


@triaged
def run_job(
    dataset_id: str,
    role: str,
    job: str,
    dag_version: str,
    *,
    requested: str | None,
    run_id: str | None,
    as_of: date | None = None,
) -> dict[str, Any]:
    # local: adds ~0.16 s to parsing the DAG files that import this module (see the module docstring)
    from greenlight.datasets.config import load_config
    from greenlight.datasets.jobs import run_job as run

    return run(
        load_config(),
        dataset_id,
        job,
        role=role,
        version=dag_version,
        requested_version=requested,
        run_id=run_id or "manual",
        as_of=as_of,
        s3_client_factory=s3_client,
    )


@triaged
def check_promotion(dataset_id: str, version: str) -> dict[str, Any]:
    """Config valid, dataset known, ``version`` a staged version of it (bad input: no retry)."""
    # local: adds ~0.16 s to parsing the DAG files that import this module (see the module docstring)
    from greenlight.datasets.config import load_config

    spec = load_config().dataset(dataset_id).version(version)
    if not spec.staged:
        raise RefusedError(f"dataset {dataset_id} v{version}", "already the primary version; nothing to promote")
    return {"dataset_id": dataset_id, "version": version, "store_path": spec.store_path}


@triaged
def validate_staged(dataset_id: str, version: str) -> dict[str, Any]:
    """The staged version's validate job; a failed validation fails without retry."""
    # local: adds ~0.16 s to parsing the DAG files that import this module (see the module docstring)
    from greenlight.datasets.config import load_config
    from greenlight.datasets.jobs import run_job as run

    result = run(
        load_config(), dataset_id, "validate", role=naming.STAGED, version=version, s3_client_factory=s3_client
    )
    log.info("staged %s v%s is valid: %s", dataset_id, version, result["result"])
    return {"dataset_id": dataset_id, "version": version, "store_path": result["store_path"]}


@triaged
def promote(dataset_id: str, version: str, *, run_id: str, keep_previous: bool) -> dict[str, Any]:
    # local: adds ~0.16 s to parsing the DAG files that import this module (see the module docstring)
    from greenlight.datasets.ops import promote as run

    return run(
        dataset_id,
        version,
        client_factory=s3_client,
        api=airflow_api(),
        run_id=run_id,
        keep_previous=keep_previous,
        run_validate=False,  # the validate_staged task did it
        say=log.info,
    )


@triaged
def cleanup(dataset_id: str, version: str, *, dry_run: bool) -> dict[str, Any]:
    # local: adds ~0.16 s to parsing the DAG files that import this module (see the module docstring)
    from greenlight.datasets.ops import cleanup as run

    return run(dataset_id, version, api=airflow_api(), dry_run=dry_run, say=log.info)

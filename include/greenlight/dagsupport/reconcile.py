"""Task bodies of the ``artefact_reconciliation`` DAG; each calls the same library code as the CLI.

No task touches the Airflow metadata database: S3 through the ``aws_default`` connection, MLflow
through ``mlflow_default`` / ``$MLFLOW_TRACKING_URI``, results through XCom, the report through
:class:`greenlight.storage.manifests.ManifestStore` at the config's ``report_uri``.

``greenlight.reconcile`` is imported inside the task bodies, not at the top: ``dags/artefact_reconciliation.py``
imports this module at parse time, and ``greenlight.reconcile.run`` (with its config, DVC and MLflow
checks) adds ~0.5 s to that (measured after the DAG file's own imports, 2 shared cores).
"""

from __future__ import annotations

import logging
from typing import Any

from greenlight.dagsupport.runtime import mlflow_tracking_uri, s3_client, triaged
from greenlight.redact import mask_for_airflow, redact

log = logging.getLogger("greenlight.tasks.reconcile")


def _config(only: list[str] | None = None):
    # local: greenlight.reconcile adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.reconcile.config import load_config

    config = load_config().select(only or None)
    for target in config.targets:  # a token in a repo URL or a password in a tracking URI: masked in logs
        mask_for_airflow(target.repo, target.tracking_uri, str(target.remote or ""))
    return config


@triaged
def targets(only: list[str] | None) -> list[dict[str, Any]]:
    """Validate the config and the ``only`` param (bad input fails here, without retry)."""
    config = _config(only)
    rows = [{"name": t.name, "kind": t.kind} for t in config.targets]
    for row in rows:
        log.info("target %s (%s)", row["name"], row["kind"])
    return rows


@triaged
def reconcile_target(target: dict[str, Any], *, run_id: str, repair: bool, dry_run: bool) -> dict[str, Any]:
    """Check one target and, with ``repair``, fix what a configured source can (one mapped task per
    target). Runbook: DVC steps 1-4, MLflow steps 2-5, git↔DVC steps 1-2 (see the DAG doc).

    Succeeds whatever it finds: the ``report`` task decides the run's outcome, so every target is
    checked and reported even when one has unrecoverable findings.
    """
    # local: greenlight.reconcile adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.reconcile.common import INLINE_ENTRIES
    from greenlight.reconcile.run import check_target
    from greenlight.storage.fast import FastS3

    config = _config([target["name"]])
    (chosen,) = config.targets
    client = s3_client(max_pool=config.workers + 8)
    result = check_target(
        config,
        chosen,
        client,
        run_id=run_id,
        repair=repair,
        dry_run=dry_run,
        tracking_uri=mlflow_tracking_uri() if chosen.kind == "mlflow" else None,
        lister=FastS3.from_client(client, max_pool=config.workers + 8),
    )
    return redact(result.as_dict(inline=INLINE_ENTRIES))  # XCom: no credentials


@triaged
def report(results: list[dict[str, Any]], *, run_id: str, repair: bool, dry_run: bool) -> dict[str, Any]:
    """Write report.json + report.md with the run's manifests, log the table, and fail the run
    (no retry) when anything is unrecoverable, or still missing after a repair run."""
    # local: greenlight.reconcile adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.reconcile.common import ReconcileError
    from greenlight.reconcile.run import COUNT_KEYS, build_report, problems, report_store, write_report

    results = sorted(results, key=lambda r: r["target"])
    config = _config()
    doc = build_report(results, run_id=run_id, repair=repair, dry_run=dry_run)
    written = write_report(report_store(config, s3_client()), doc)
    log.info("reconciliation report %s\n%s", written["report"], written["markdown"])
    totals = doc["totals"]
    summary = {
        **totals,
        "report": written["report"],
        "report_md": written["report_md"],
        "targets": {r["target"]: {k: r[k] for k in COUNT_KEYS} for r in results},
    }
    failing = problems(results, include_outstanding=repair and not dry_run)
    if failing:
        for line in failing:
            log.error("%s", line)
        raise ReconcileError(failing, written["report"])
    if totals["outstanding"]:
        log.warning(
            "%d missing object(s) can be repaired: trigger with repair=true (dry_run=false)", totals["outstanding"]
        )
    return redact(summary)

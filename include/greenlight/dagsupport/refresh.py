"""Task bodies of the ``staging_refresh`` DAG; each calls the same library step as the CLI.

Connections: PostgreSQL through the postgres provider's ``PostgresHook`` (the config's
``source_conn`` / ``target_conn``), S3 through the config's ``aws_conn`` (``aws_default``).
Results travel by XCom; no task touches the Airflow metadata database.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from greenlight.dagsupport.runtime import s3_client, triaged
from greenlight.refresh import checks, leases
from greenlight.refresh import run as steps
from greenlight.refresh.config import load_config
from greenlight.refresh.connections import from_airflow

log = logging.getLogger("greenlight.tasks.refresh")


def _refresh(params: dict[str, Any], run_id: str):
    config = load_config()
    return steps.Refresh(
        config=config,
        run_id=run_id,
        resolve=from_airflow,
        s3=lambda: s3_client(config.aws_conn, max_pool=config.workers + 8),
        s3_source=lambda: s3_client(config.source_aws_conn, max_pool=config.workers + 8),
        only=list(params.get("only") or ()),
        dry_run=bool(params.get("dry_run")),
        skip_migrations=bool(params.get("skip_migrations")),
        wait=float(params.get("lease_wait") or 0),
    )


def _held(r: steps.Refresh):
    """The run's leases (every bucket target, the staging database) while a task works.

    The DAG run holds them from ``preflight`` to ``summary``: each task takes them back (the run id
    is the holder; mapped FK-group tasks at once), renews them while it works and parks them when it
    ends, so no other refresh or promotion gets in between two tasks; ``summary`` releases them."""
    specs = leases.run_specs(r)
    if not specs:
        return nullcontext()
    return leases.holding(r.client(), specs, run_id=r.run_id, wait=r.wait, scope="run")


def _release(r: steps.Refresh) -> list[str]:
    specs = leases.run_specs(r)
    return leases.release(r.client(), specs, run_id=r.run_id) if specs else []


def release_after_failure(context: dict[str, Any]) -> None:
    """The DAG run failed: end its hold on the staging targets now, not at the leases' expiry. Never raises."""
    try:
        dag_run = context["dag_run"]
        released = _release(_refresh(dict(dag_run.conf or {}), dag_run.run_id))
        if released:
            log.warning("run %s failed: released its leases on %s", dag_run.run_id, ", ".join(released))
    except Exception as exc:  # noqa: BLE001 - a callback must not fail; the leases expire on their own
        log.warning("could not release the leases of a failed refresh run: %s", exc)


@triaged
def preflight(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook §1-2 ("fix profiles", dry run): connections resolve, target is not prod and not the
    source database, prod opens read-only, tables and FK groups listed, schema versions recorded,
    bucket pairs reachable and within the delete guard. Any refusal fails here, without retry.

    Then the run takes its leases (bucket targets, staging database): another refresh or a
    promotion writing one of them refuses the run here, before anything changes (or after
    ``lease_wait`` seconds)."""
    r = _refresh(params, run_id)
    pre = steps.preflight(r)
    with _held(r):
        return pre


@triaged
def copy_tables(group: list[str], pre: dict[str, Any], params: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    """Runbook "sync database via Lambda", for one FK group: type-correct streaming COPY in one
    staging transaction. A failed table is reported (the run fails in ``summary``), staging keeps
    its old rows; connection errors are retried."""
    r = _refresh(params, run_id)
    with _held(r):
        return steps.copy_tables(r, group, pre)


@triaged
def sync_buckets(params: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    """Runbook "sync S3 images via script": the promotion engine's plan/copy per bucket mapping."""
    r = _refresh(params, run_id)
    with _held(r):
        return steps.sync_buckets(r)


@triaged
def migrate(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook "run migrations on staging via API" (a command or the HTTP endpoint)."""
    r = _refresh(params, run_id)
    with _held(r):
        return checks.migrate(r)


@triaged
def health(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook "verify staging health": deep health URL and SQL checks on staging."""
    r = _refresh(params, run_id)
    with _held(r):  # reads only, but keeps the run's hold continuous from migrate to verify
        return checks.health(r)


@triaged
def verify(tables: list[list[dict[str, Any]]], params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook "verify data": row counts per table (and checksums where configured), buckets object by object."""
    r = _refresh(params, run_id)
    with _held(r):
        return steps.verify(r, _flat(tables))


@triaged
def summary(
    pre: dict[str, Any],
    tables: list[list[dict[str, Any]]],
    buckets: list[dict[str, Any]],
    migration: dict[str, Any],
    health_result: dict[str, Any],
    verification: dict[str, Any],
    params: dict[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """The sync-results table of the runbook: per-table status in the log, the run manifest; fails
    the run (no retry) when any table failed or verification found a difference."""
    r = _refresh(params, run_id)
    result = steps.summarize(r, pre, _flat(tables), buckets or [], migration, health_result, verification)
    result["leases_released"] = _release(r)  # the run's end: its hold on the targets ends here
    log.info(
        "refresh_done run_id=%s rows_synced=%d tables_synced=%d skipped=%d failed=%d objects_copied=%d "
        "bytes_copied=%d manifest=%s",
        run_id,
        result["rows_synced"],
        result["tables_synced"],
        result["tables_skipped"],
        result["tables_failed"],
        result["objects_copied"],
        result["bytes_copied"],
        result["manifest"],
    )
    if steps.exit_code(result):
        failed = [f"{t['table']}: {t['reason']}" for t in result["tables"] if t["status"] == "failed"]
        raise checks.RefreshFailedError("summary", "; ".join(failed + result["problems"]))
    return result


def _flat(groups) -> list[dict[str, Any]]:
    return [row for group in (groups or ()) if group for row in group]

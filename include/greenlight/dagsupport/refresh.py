"""Task bodies of the ``staging_refresh`` DAG; each calls the same library step as the CLI.

Connections: PostgreSQL through the postgres provider's ``PostgresHook`` (the config's
``source_conn`` / ``target_conn``), S3 through the config's ``aws_conn`` (``aws_default``).
Results travel by XCom; no task touches the Airflow metadata database.
"""

from __future__ import annotations

import logging
from typing import Any

from greenlight.dagsupport.runtime import s3_client, triaged
from greenlight.refresh import checks
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
    )


@triaged
def preflight(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook §1-2 ("fix profiles", dry run): connections resolve, target is not prod and not the
    source database, prod opens read-only, tables and FK groups listed, schema versions recorded,
    bucket pairs reachable and within the delete guard. Any refusal fails here, without retry."""
    return steps.preflight(_refresh(params, run_id))


@triaged
def copy_tables(group: list[str], pre: dict[str, Any], params: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    """Runbook "sync database via Lambda", for one FK group: type-correct streaming COPY in one
    staging transaction. A failed table is reported (the run fails in ``summary``), staging keeps
    its old rows; connection errors are retried."""
    return steps.copy_tables(_refresh(params, run_id), group, pre)


@triaged
def sync_buckets(params: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    """Runbook "sync S3 images via script": the promotion engine's plan/copy per bucket mapping."""
    return steps.sync_buckets(_refresh(params, run_id))


@triaged
def migrate(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook "run migrations on staging via API" (a command or the HTTP endpoint)."""
    return checks.migrate(_refresh(params, run_id))


@triaged
def health(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook "verify staging health": deep health URL and SQL checks on staging."""
    return checks.health(_refresh(params, run_id))


@triaged
def verify(tables: list[list[dict[str, Any]]], params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook "verify data": row counts per table (and checksums where configured), buckets object by object."""
    return steps.verify(_refresh(params, run_id), _flat(tables))


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
    result = steps.summarize(
        _refresh(params, run_id), pre, _flat(tables), buckets or [], migration, health_result, verification
    )
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

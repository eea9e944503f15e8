"""Task bodies of the ``artefact_promotion`` DAG; each calls the same library code as the CLI."""

from __future__ import annotations

import logging
import time
from typing import Any

from greenlight.dagsupport.runtime import mlflow_tracking_uri, s3_client, triaged

log = logging.getLogger("greenlight.tasks.promotion")

#: Asset alias through which ``verify`` emits one event per verified prod prefix.
PROMOTED_ALIAS = "greenlight-promoted-prefixes"


def _engine(only: list[str] | None = None, progress=None):
    from greenlight.config import load_config
    from greenlight.sync import Engine

    config = load_config().select(only or None)
    return Engine(config, s3_client(max_pool=config.workers), progress=progress)


@triaged
def preflight(only: list[str] | None) -> list[dict[str, Any]]:
    """Runbook §2 preconditions: config valid, both buckets answer, prod versioned, no QA run RUNNING."""
    engine = _engine(only)
    report = engine.preflight()
    for row in engine.check_mlflow(mlflow_tracking_uri()):
        log.info("preflight ok: no RUNNING run in MLflow experiment %s", row["experiment"])
    for row in report:
        log.info("preflight ok: %s -> %s (versioning %s)", row["prefix"], row["destination"], row["versioning"])
    return report


@triaged
def plan(only: list[str] | None) -> list[dict[str, Any]]:
    """List both sides of every prefix and apply the safety rules before anything changes.

    Any refusal fails the whole run here, so no prefix is promoted when one is refused.
    """
    engine = _engine(only)
    plans = engine.plan_all()
    for p in plans:
        engine.check(p)
    summaries = [p.summary() for p in plans]
    for s in summaries:
        log.info(
            "plan %s: copy %d (overwrite %d), delete %d, unchanged %d, %d bytes",
            s["prefix"],
            s["to_copy"],
            s["to_overwrite"],
            s["to_delete"],
            s["unchanged"],
            s["bytes_to_copy"],
        )
    return summaries


@triaged
def promote(planned: dict[str, Any], *, run_id: str, dry_run: bool) -> dict[str, Any]:
    """Promote one prefix (one mapped task per prefix): re-plan, re-check, copy, delete, manifest.

    Re-planning makes a cleared-and-rerun task converge: it does only what is still missing and
    merges into the same run's manifest, keeping the first attempt's pre-promotion versions.
    """
    from greenlight.progress import Progress
    from greenlight.sync import prefix_line

    progress = Progress(tty=False, interval=10.0)
    engine = _engine([planned["prefix"]], progress=progress)
    (prefix,) = engine.config.prefixes
    current = engine.plan(prefix)
    progress.start(len(current.copies) + len(current.deletes), current.bytes_to_copy)
    result = engine.execute(current, run_id, dry_run=dry_run)
    progress.finish()
    row = result.as_dict()
    log.info("promoted %s", prefix_line(row))
    if not dry_run:
        engine.check_stale(current)
    return row


@triaged
def verify(results: list[dict[str, Any]], *, dry_run: bool) -> list[dict[str, Any]]:
    """Runbook §4 verification, done for every object: prod equals QA for each promoted prefix."""
    if dry_run:
        log.info("dry run: nothing was changed, nothing to verify")
        return []
    engine = _engine([r["prefix"] for r in results])
    checks = []
    for prefix in engine.config.prefixes:
        checks.append(engine.verify(prefix))
        log.info("verified %s: %d objects equal in %s", prefix.label, checks[-1]["objects"], prefix.destination)
    return checks


def asset_events(results: list[dict[str, Any]], checks: list[dict[str, Any]], *, run_id: str) -> list[dict[str, Any]]:
    """One Asset event per verified prefix: the prod prefix URI and what this run did to it."""
    by_prefix = {r["prefix"]: r for r in results}
    events = []
    for check in checks:
        row = by_prefix.get(check["prefix"], {})
        events.append(
            {
                "uri": check["destination"],
                "extra": {
                    "run_id": run_id,
                    "source": check["prefix"],
                    "objects": check["objects"],
                    "copied": row.get("copied", 0),
                    "deleted": row.get("deleted", 0),
                    "manifest": row.get("manifest"),
                },
            }
        )
    return events


@triaged
def summary(
    results: list[dict[str, Any]], verified: list[dict[str, Any]], *, run_id: str, dry_run: bool
) -> dict[str, Any]:
    """The final summary line (what the runbook's ``qa_to_prod_done`` line reported) and run index."""
    from greenlight.sync import summarize

    started = time.monotonic()
    total = summarize(list(results), run_id=run_id, dry_run=dry_run, duration=sum(r["duration_s"] for r in results))
    if not dry_run:
        engine = _engine([r["prefix"] for r in results])
        total["manifest"] = engine.write_run_index(
            run_id, total["per_prefix"], status="complete", verified=len(verified)
        )
    log.info(
        "promotion_done run_id=%s copied=%d deleted=%d unchanged=%d objects_seen=%d bytes_copied=%d manifest=%s",
        run_id,
        total["copied"],
        total["deleted"],
        total["unchanged"],
        total["objects_seen"],
        total["bytes_copied"],
        total["manifest"],
    )
    total["summary_s"] = round(time.monotonic() - started, 3)
    return total


@triaged
def rollback_plan(manifest: str, only: list[str] | None, allow_partial: bool) -> dict[str, Any]:
    """What a rollback would restore or delete (a dry run); refuses if a recorded version is gone."""
    from greenlight.rollback import rollback

    summary = rollback(manifest, s3_client(), only=only or None, dry_run=True, allow_partial=allow_partial)
    for line in summary["plan_lines"]:
        log.info("rollback plan: %s", line)
    for key in summary["unrecoverable"]:
        log.warning("cannot restore: %s", key)
    return {k: v for k, v in summary.items() if k != "plan_lines"}


@triaged
def rollback_apply(manifest: str, only: list[str] | None, allow_partial: bool, *, run_id: str) -> dict[str, Any]:
    """Restore every touched key to its recorded version, verify object by object, write a manifest."""
    from greenlight.rollback import rollback

    summary = rollback(manifest, s3_client(), only=only or None, allow_partial=allow_partial, run_id=run_id)
    summary.pop("plan_lines", None)
    log.info(
        "rollback_done run_id=%s restored=%d deleted=%d unchanged=%d manifests=%s",
        run_id,
        summary["restored"],
        summary["deleted"],
        summary["unchanged"],
        summary.get("rollback_manifests"),
    )
    return summary

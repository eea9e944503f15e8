"""
### artefact_reconciliation — are DVC remotes, MLflow artifacts and `dvc.lock` in sync with S3 and git?

Automates the sync-recovery runbook's DVC → S3, MLflow → S3 and Git ↔ DVC sections: checks every
configured target, repairs what a configured source can, and writes a report (JSON + a Markdown
table) with the run's manifests. Unlike `dvc status -c`, a file deleted from the remote *inside a
tracked directory* is found (DVC trusts the `.dir` manifest); the remote is listed once instead of
one HEAD per file.

| task | runbook step it automates |
|---|---|
| `targets` | reads `include/config/reconcile.yaml` (or `$GREENLIGHT_RECONCILE_CONFIG`), applies `only`; bad config fails here without retry |
| `reconcile_target` (one mapped task per target) | **dvc**: steps 1-2 (`dvc status -c`, `mc ls` of the remote) as one listing diffed against every `.dvc`/`dvc.lock` at the ref; step 3 (`dvc push` from the cache) and step 4 (the backup remote) as repairs. **mlflow**: steps 2-3 (runs, artifact store) and 5 (artifacts accessible), orphans; step 4 (re-upload) from `restore_dir`. **git_dvc**: steps 1-2 (`git status`, `dvc status`) on the committed ref; step 3 (`dvc repro`) stays a human decision |
| `report` | the verification checklist: report + Markdown table in the log; fails the run (no retry) listing what is unrecoverable |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

**Params** — `repair` (push/copy/upload missing objects; only absent keys are written, never an
overwrite or delete), `dry_run` (say what would be repaired, change nothing), `only` (target names).
**Report columns** — checked, missing, repaired, unrecoverable (no configured source; a human must
act), orphans (present but referenced by nothing; never deleted). See `docs/reconciliation.md`.
**Connections** — S3 `aws_default` (endpoint in its extra); MLflow `mlflow_default` or
`$MLFLOW_TRACKING_URI`. Schedule: `$GREENLIGHT_RECONCILE_SCHEDULE` (cron, UTC; `none` = manual).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from greenlight.dagsupport import reconcile as steps
from greenlight.dagsupport.defaults import add_run_check, default_args, documented, schedule_from_env

SCHEDULE = schedule_from_env("GREENLIGHT_RECONCILE_SCHEDULE", "30 2 * * *")

DEFAULT_ARGS = default_args(retries=2, retry_delay_s=30)


@dag(
    dag_id="artefact_reconciliation",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=["greenlight", "reconciliation", "dvc", "mlflow"],
    params={
        "repair": Param(
            True,
            type="boolean",
            description="Repair missing objects from the local cache, a fallback remote or the restore dir. "
            "Only absent keys are written.",
        ),
        "dry_run": Param(False, type="boolean", description="Report what would be repaired; change nothing."),
        "only": Param(
            [],
            type="array",
            items={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"},
            uniqueItems=True,
            description="Reconcile only these configured targets (by name). Empty = all.",
        ),
    },
)
def artefact_reconciliation():
    @task
    def targets(params=None) -> list[dict]:
        """Sync-recovery runbook: read the reconcile config and pick the targets (bad config fails here).

        Retry category: A — read-only; clear in place.
        """
        return steps.targets(params["only"])

    @task(map_index_template="{{ reconciled_target }}")
    def reconcile_target(target: dict, params=None, run_id=None) -> dict:
        """Sync-recovery runbook DVC/MLflow/git steps for one target: list, diff, repair what a configured source can.

        Retry category: A — repairs write only absent keys; clear in place.
        """
        get_current_context()["reconciled_target"] = target["name"]
        return steps.reconcile_target(target, run_id=run_id, repair=params["repair"], dry_run=params["dry_run"])

    @task
    def report(results: list[dict], params=None, run_id=None) -> dict:
        """Sync-recovery verification checklist: write the report and fail listing what is unrecoverable.

        Retry category: C — fails on purpose when objects are unrecoverable: restore them by hand, then rerun.
        """
        return steps.report(list(results), run_id=run_id, repair=params["repair"], dry_run=params["dry_run"])

    report(documented(reconcile_target).expand(target=targets()))


add_run_check(artefact_reconciliation())

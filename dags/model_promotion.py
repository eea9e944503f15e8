"""
### model_promotion — promote a model head atomically and reversibly

Automates the operations runbook's "Promoting model heads to current/production": check the
candidate, smoke-score it on a recent partition without publishing, then move the registered
model's alias (default `champion`) **and** the pointer `current/models/<name>.json` together,
keeping the previous head; one Asset event per move, so consumers rerun on the new head. With
`rollback`, the previous head is restored (alias and pointer) and the consumer runs that used the
rolled-back version are listed.

| task | runbook step it automates |
|---|---|
| `choose` | promote (default) or `rollback` |
| `check_candidate` | step 1: the candidate (version, `@alias` or MLflow run id) exists, its run is FINISHED, `MLmodel` and every file it names are in the artifact store, a signature or `meta.json` is there |
| `smoke_score` | step 2: score `smoke_partition` with the candidate's own files, publish nothing, check rows/columns/types against the model's output contract (`include/config/models.yaml`) |
| `promote_model` | step 3: alias + pointer moved as one step (a failed pointer write puts the alias back); Asset event on the pointer |
| `rollback_model` | step 5: restore the previous alias + pointer; list consumer runs that used the rolled-back version |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

**Params** — `model_name`, `candidate`, `smoke_partition`, `dry_run`, `rollback`.
**Refusals** — a candidate failing any check fails its task without retry ("do not retry"), naming
the candidate and the check: nothing moves. Same from a terminal:
`greenlight model promote --name X --candidate 7 --smoke-partition s3://…/date=…/` (exit 2) and
`greenlight model rollback --name X`.
**Connections** — MLflow `mlflow_default` (or `$MLFLOW_TRACKING_URI`), S3 `aws_default`.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias, Param, task

from greenlight.dagsupport.defaults import add_run_check, manual_dag

#: Asset alias through which a promotion or rollback emits one event for the model's pointer.
MODELS_ALIAS = "greenlight-model-heads"


def steps():
    """The task bodies: imported when a task runs, never at parse time."""
    from greenlight.dagsupport import models

    return models


@manual_dag(
    "model_promotion",
    __doc__,
    tags=["models", "mlflow"],
    retries=2,
    params={
        "model_name": Param(type="string", minLength=1, description="Registered model name (in models.yaml)."),
        "candidate": Param("", type="string", description="Model version (7), @alias, or MLflow run id."),
        "smoke_partition": Param("", type="string", description="s3:// prefix or folder of CSV/parquet to score."),
        "dry_run": Param(False, type="boolean", description="Check and smoke-score only; move nothing."),
        "rollback": Param(False, type="boolean", description="Restore the previous head instead of promoting."),
    },
)
def model_promotion():
    @task.branch
    def choose(params=None) -> str:
        """Promote (default) or roll back.

        Retry category: A — a decision over the params.
        """
        return "rollback_model" if params["rollback"] else "check_candidate"

    @task
    def check_candidate(params=None) -> dict:
        """Runbook step 1: the candidate's run is FINISHED and all its model files are in the artifact store.

        Retry category: C — a bad candidate is refused ("do not retry"): pick or fix another candidate.
        """
        return steps().check_candidate(params["model_name"], params["candidate"])

    @task
    def smoke_score(checked: dict, params=None) -> dict:
        """Runbook step 2: score a recent partition without publishing; output shape against the contract.

        Retry category: C — a wrong output shape is refused ("do not retry"): fix the model or its contract.
        """
        return steps().smoke_score(checked, params["smoke_partition"])

    @task(outlets=[AssetAlias(MODELS_ALIAS)])
    def promote_model(checked: dict, smoke: dict, params=None, run_id=None, outlet_events=None) -> dict:
        """Runbook step 3: move the alias and the `current/models/<name>.json` pointer together.

        Retry category: B — publishes: a second publish under this run id is refused unless identical.
        """
        result = steps().promote_model(checked, smoke, run_id=run_id, dry_run=params["dry_run"])
        event = steps().asset_event(result)
        if event:
            outlet_events[AssetAlias(MODELS_ALIAS)].add(
                Asset(uri=event["uri"], name=event["name"]), extra=event["extra"]
            )
        return result

    @task(outlets=[AssetAlias(MODELS_ALIAS)])
    def rollback_model(params=None, run_id=None, outlet_events=None) -> dict:
        """Runbook step 5: restore the previous alias and pointer; list runs that used the rolled-back version.

        Retry category: B — moves the head back: trigger a new run rather than clearing.
        """
        result = steps().rollback_model(params["model_name"], run_id=run_id, dry_run=params["dry_run"])
        event = steps().asset_event(result)
        if event:
            outlet_events[AssetAlias(MODELS_ALIAS)].add(
                Asset(uri=event["uri"], name=event["name"]), extra=event["extra"]
            )
        return result

    checked = check_candidate()
    choose() >> [checked, rollback_model()]
    promote_model(checked, smoke_score(checked))


add_run_check(model_promotion())

"""
### dataset_version_cleanup — remove a staged dataset version (runbook 002, "cleanup-staging")

Manual. Given a dataset id and one of its staged versions:

| task | runbook step it automates |
|---|---|
| `cleanup` | validates the dataset id and **refuses the primary version**; pauses the staged DAGs (`staging__{id}__v{version_dashes}__update` / `__validate`) through the REST API so no new run starts; removes the staged entry from the datasets config (temp file + rename, comments kept; works even if the config has other problems — that is how a bad entry is removed); deletes the DAGs' metadata and the version's pool through the REST API (the seed's `kubectl delete cronjob` and Sentry monitor deletion); and lists what it left on purpose: **the store path is never deleted** ("Not deleted: s3://…/v0.3.0.zarr") and the `stage/<id>/v<version>` branch is the team's CI to delete |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

**Params**: `dataset_id`, `version`, `dry_run` (log what would be removed, change nothing).
**Connection**: `airflow_api` (REST API user). A rerun is safe: whatever is already gone is
reported as such. In a deployment where the DAGs folder comes from git, commit the rewritten
config (or run `python -m greenlight datasets cleanup`, which does the same). See docs/datasets.md.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from greenlight.dagsupport import datasets as steps
from greenlight.dagsupport.defaults import add_run_check, manual_dag


@manual_dag(
    "dataset_version_cleanup",
    __doc__,
    tags=["dataset", "staging", "cleanup"],
    retries=2,
    retry_delay_s=30,
    params={
        "dataset_id": Param(
            "", type="string", pattern="^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The dataset's id in datasets.yaml."
        ),
        "version": Param(
            "", type="string", pattern="^[0-9][0-9A-Za-z.-]*$", description="The staged version to remove, e.g. 0.3.0."
        ),
        "dry_run": Param(False, type="boolean", description="Log what would be removed; change nothing."),
    },
)
def dataset_version_cleanup():
    @task
    def cleanup(params=None) -> dict:
        """Runbook 002 "cleanup-staging" steps 1-3 and 5: validate, delete the staged jobs (DAGs,
        pool) and their monitors' equivalent (DAG metadata), print what is left behind.

        Retry category: A — pausing and deleting what is already gone is a no-op; clear in place.
        """
        return steps.cleanup(params["dataset_id"], params["version"], dry_run=params["dry_run"])

    cleanup()


add_run_check(dataset_version_cleanup())

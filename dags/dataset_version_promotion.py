"""
### dataset_version_promotion — make a staged dataset version the primary (runbook 002, "Promoting to primary")

Manual. Given a dataset id and one of its **staged** versions (see `dataset_versions`):

| task | runbook step it automates |
|---|---|
| `check` | the dataset and version are configured and the version is staged, not already the primary (bad input fails here, no retry) |
| `validate_staged` | "verify the backfill": runs the staged version's validate job against its own store path |
| `promote` | moves the dataset's `current` pointer (`current/datasets_<id>.json` under the config's `pointer_root`, one atomic write, the previous pointer kept for rollback) to the staged store path; rewrites the config (temp file + rename, comments kept): `primary` becomes the version, the staged entry goes (with `keep_previous`, the old primary stays as a staged legacy version); then "clean up the now-redundant staging resources": pauses and deletes the staged DAGs through the REST API (the version's pool stays: the new primary runs in it). Store paths are never deleted |
| `check_run` | the operations runbook's daily check of this run (last; trigger rule `none_failed`): every task has its success/skipped manifest, the `current` pointers moved, one run id throughout |

After it, `{dataset_id}__update` writes the promoted version's store path. In a deployment where
the DAGs folder comes from git, commit the rewritten config (or run
`python -m greenlight datasets promote` in CI, which does the same). **Params**: `dataset_id`,
`version`, `keep_previous`. **Connections**: `aws_default` (pointer and validation reads),
`airflow_api` (REST API user for the staged DAGs). See docs/datasets.md.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from greenlight.dagsupport import datasets as steps
from greenlight.dagsupport.defaults import add_run_check, manual_dag

ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VERSION_PATTERN = "^[0-9][0-9A-Za-z.-]*$"


@manual_dag(
    "dataset_version_promotion",
    __doc__,
    tags=["dataset", "staging", "promotion"],
    retries=2,
    retry_delay_s=30,
    params={
        "dataset_id": Param("", type="string", pattern=ID_PATTERN, description="The dataset's id in datasets.yaml."),
        "version": Param(
            "", type="string", pattern=VERSION_PATTERN, description="The staged version to promote, e.g. 0.3.0."
        ),
        "keep_previous": Param(
            False,
            type="boolean",
            description="Keep the old primary as a staged (legacy) version that keeps updating.",
        ),
    },
)
def dataset_version_promotion():
    @task
    def check(params=None) -> dict:
        """Runbook 002 "Promoting to primary", preconditions: dataset and staged version configured.

        Retry category: A — read-only; clear in place.
        """
        return steps.check_promotion(params["dataset_id"], params["version"])

    @task
    def validate_staged(checked: dict) -> dict:
        """Runbook 002 setup step 6 "verify the backfill": the staged version's validate job.

        Retry category: A — read-only validation; clear in place.
        """
        return steps.validate_staged(checked["dataset_id"], checked["version"])

    @task
    def promote(validated: dict, params=None, run_id=None) -> dict:
        """Runbook 002 "Promoting to primary" steps 1-3: pointer, config primary, staged DAGs removed.

        Retry category: B — moves the dataset's current pointer; after a failure trigger a new run.
        """
        return steps.promote(
            validated["dataset_id"], validated["version"], run_id=run_id, keep_previous=params["keep_previous"]
        )

    promote(validate_staged(check()))


add_run_check(dataset_version_promotion())

"""
### backfill_probe — test DAG for `greenlight backfill` (tests/e2e/test_backfill_scheduler.py)

A daily partitioned DAG with one task and the final `check_run` every greenlight DAG has (which,
in a backfill run, writes the partition into `backfills/airflow-<N>/summary.json`). `work` fails (a contract error: no retry) when its run's logical date is listed
in the Variable `backfill_probe_fail_dates` (a JSON list of `YYYY-MM-DD`); once the Variable is
cleared, the same partition succeeds. So a backfill can be made to fail chosen partitions, and a
`--resume` after the "fix" reruns just those.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from greenlight.dagsupport.defaults import add_run_check, default_args
from greenlight.dagsupport.runtime import triaged

FAIL_VARIABLE = "backfill_probe_fail_dates"


@triaged
def _work(ds: str, fail_dates: list[str]) -> dict:
    if ds in fail_dates:
        from greenlight.errors import ContractError

        raise ContractError(f"partition {ds}", "upstream delivery is missing column 'price' (test failure)")
    return {"partition": ds, "rows": 10}


@dag(
    dag_id="backfill_probe",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["greenlight", "test"],
    # Retries for what a retry can fix (a task that could not start on a busy machine); the
    # partition's deliberate failure is a contract error: triaged, it fails at once, no retry.
    default_args=default_args(retries=2, retry_delay_s=2),
)
def backfill_probe():
    @task
    def work(ds=None) -> dict:
        """Runbook 003 backfill probe: one partition's work. Retry category: A."""
        import json

        from airflow.sdk import Variable

        return _work(ds, json.loads(Variable.get(FAIL_VARIABLE, default="[]")))

    work()


add_run_check(backfill_probe())

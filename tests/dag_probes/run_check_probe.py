"""
### run_check_probe — test DAG for the final `check_run` task (tests/dags/test_check_run.py)

| task | what it does |
|---|---|
| `items` | returns three items |
| `work` | mapped over them; with `fail_one`, item 1 fails without retry |
| `done` | downstream of every `work` |
| `check_run` | trigger rule `all_done`: checks this run's task manifests with `greenlight.dagsupport.runcheck` |
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from greenlight.dagsupport.defaults import default_args, documented
from greenlight.dagsupport.runcheck import check_own_run
from greenlight.dagsupport.runtime import triaged


@triaged
def _work(item: int, fail: bool) -> int:
    if fail:
        from greenlight.errors import ConfigError

        raise ConfigError(f"item {item} refused by the test")
    return item * 10


@dag(
    dag_id="run_check_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["greenlight", "test"],
    default_args=default_args(retries=0),
    params={"fail_one": Param(False, type="boolean")},
)
def run_check_probe():
    @task
    def items() -> list[int]:
        """Retry category: A."""
        return [0, 1, 2]

    @task
    def work(item: int, params=None) -> int:
        """Retry category: A."""
        return _work(item, params["fail_one"] and item == 1)

    @task
    def done(results: list[int]) -> int:
        """Retry category: A."""
        return sum(results)

    @task(trigger_rule="all_done")
    def check_run(dag=None, run_id=None) -> dict:
        """Retry category: A. The runbook's daily check of this run."""
        return check_own_run(dag, run_id)

    done(documented(work).expand(item=items())) >> check_run()


run_check_probe()

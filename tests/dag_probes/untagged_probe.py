"""
### untagged_probe — a DAG *not* tagged `greenlight`: the listener must write no manifest for it.

Used by tests/dags/test_task_manifests.py next to `greenlight_listener_probe`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="untagged_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["test"],
    default_args={"owner": "platform", "retries": 0},
)
def untagged_probe():
    @task
    def hello() -> str:
        return "hello"

    hello()


untagged_probe()

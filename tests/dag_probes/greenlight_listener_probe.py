"""
### greenlight_listener_probe — test DAG for the task-manifest listener (tests/dags/test_task_manifests.py)

Tagged `greenlight`, so the listener plugin writes a manifest for each of its tasks:

| task | what it does |
|---|---|
| `checked` | succeeds and reports two checks (the `{"checks": [...]}` convention) |
| `flaky` | lists a bucket through the connection `gl_probe_s3` (a fault proxy in front of the test S3 server, one botocore attempt): the test makes try 1 get a real `503 SlowDown` (transient, retried) and try 2 succeed; it is handed the S3 secret key twice through templates, once under a sensitive name and once not, to prove neither reaches a manifest |
| `contract` | raises a `ContractError`: fails on try 1 without retry although `retries=2` |
| `square` | mapped over two values, one manifest per map index |
| `after_contract` | downstream of `contract`: never runs (upstream_failed), so it has no manifest |
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from greenlight.dagsupport.notify import default_notifier
from greenlight.dagsupport.runtime import triaged


@triaged
def _list_through_proxy(bucket: str) -> int:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from botocore.config import Config

    hook = AwsBaseHook(aws_conn_id="gl_probe_s3", client_type="s3")
    client = hook.get_client_type(config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    return client.list_objects_v2(Bucket=bucket, MaxKeys=5).get("KeyCount", 0)


@triaged
def _check_contract(location: str) -> None:
    from greenlight.errors import ContractError

    raise ContractError(location, "column 'value' is missing (contract deliveries_csv)")


@dag(
    dag_id="greenlight_listener_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["greenlight", "test"],
    default_args={
        "owner": "platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=0),
        "on_failure_callback": default_notifier(),
    },
    params={"bucket": Param("qa-greenlight-test", type="string"), "rows": Param(3, type="integer")},
)
def greenlight_listener_probe():
    @task
    def checked(params=None) -> dict:
        return {
            "rows": params["rows"],
            "checks": [{"name": "rows_positive", "ok": params["rows"] > 0}, {"name": "no_nulls", "passed": True}],
        }

    @task
    def flaky(bucket: str, api_token: str, note: str, ti=None) -> dict:
        assert api_token and note  # the secret really was handed to the task
        return {"listed": _list_through_proxy(bucket), "try_number": ti.try_number}

    @task
    def contract(location: str) -> None:
        _check_contract(location)

    @task
    def square(n: int) -> int:
        return n * n

    @task
    def after_contract() -> str:
        return "never runs"

    checked()
    flaky(
        bucket="{{ params.bucket }}",
        api_token="{{ conn.aws_default.password }}",
        note="{{ conn.aws_default.password }}",
    )
    contract("s3://{{ params.bucket }}/deliveries/") >> after_contract()
    square.expand(n=[2, 3])


greenlight_listener_probe()

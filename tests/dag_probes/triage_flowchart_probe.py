"""
### triage_flowchart_probe — test DAG for the triage flowchart (tests/integration/test_triage_flowchart.py)

Tagged `greenlight`, with greenlight's `default_args()` (retry policy and notifier):

| task | what it does |
|---|---|
| `produce` | the upstream step: "publishes" the run's partition `s3://<bucket>/<prefix>run=<run id>/` but writes nothing into it |
| `consume` | reads that partition through `greenlight.inputs.require_partition`: an empty upstream partition, `missing_input`, fails on try 1 without retry; its hint names `produce`'s manifest for the same run id |
| `bind_port` | binds 127.0.0.1:`port`, which the test holds: a real `EADDRINUSE`, class `service`, retried once after the service backoff |
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from greenlight.dagsupport.defaults import default_args
from greenlight.dagsupport.runtime import s3_client, triaged


@triaged
def _consume(partition: str) -> int:
    from greenlight.inputs import require_partition

    return len(require_partition(s3_client(), partition, upstream="produce"))


@triaged
def _bind(port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@dag(
    dag_id="triage_flowchart_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["greenlight", "test"],
    default_args=default_args(retries=1, retry_delay_s=0),
    params={
        "bucket": Param("qa-greenlight-test", type="string"),
        "prefix": Param("probe/", type="string"),
        "port": Param(1, type="integer"),
    },
)
def triage_flowchart_probe():
    @task
    def produce(params=None, run_id=None) -> str:
        """Retry category: A. The upstream step; writes nothing into its partition."""
        return f"s3://{params['bucket']}/{params['prefix']}run={run_id.replace(':', '_')}/"

    @task(retries=2)
    def consume(partition: str) -> int:
        """Retry category: C. Reads the upstream partition."""
        return _consume(partition)

    @task
    def bind_port(params=None) -> None:
        """Retry category: A. Binds a port the test holds."""
        _bind(params["port"])

    consume(produce())
    bind_port()


triage_flowchart_probe()

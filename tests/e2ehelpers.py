"""Helpers of the end-to-end tests: greenlight's REST client made polling-tolerant, and waits.

Runs are triggered and watched through the Airflow REST API (``/api/v2``), as the UI does.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from helpers import write_config

from greenlight.dagsupport.api import AirflowApi, AirflowApiUnavailable
from greenlight.dev import demo_data

FINISHED = ("success", "failed")


class Api:
    """greenlight's REST client, polling-tolerant: a missing resource, or a busy API server slow to
    answer (2 cores shared with the scheduler and the tasks), is None and the caller polls again."""

    def __init__(self, base: str, password: str, user: str = "admin"):
        self.client = AirflowApi(base, user, password)

    def get(self, path: str):
        try:
            return self.client.get(f"/api/v2{path}")
        except AirflowApiUnavailable:
            return None

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST to ``/api/v2{path}`` (not retried: a trigger must not be sent twice)."""
        import urllib.request

        req = urllib.request.Request(
            f"{self.client.base_url}/api/v2{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.client.token()}"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback test server
            return json.loads(resp.read())

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A manual run (no logical date, as the UI's Trigger button makes); returns its run id."""
        run = self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict | None:
        return self.get(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        page = self.get(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances?limit=200")
        return page["task_instances"] if page else []

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
        return {(t["task_id"], t["map_index"]): t["state"] for t in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task's return value, as JSON."""
        run = urllib.parse.quote(run_id, safe="")
        entry = self.get(
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}&deserialize=true&stringify=false"
        )
        value = entry["value"] if entry else None
        return json.loads(value) if isinstance(value, str) else value

    def wait_finished(self, dag_id: str, run_id: str, timeout: float) -> str:
        """The run's final state (success / failed), polling until ``timeout``."""

        def finished():
            run = self.run(dag_id, run_id)
            return run["state"] if run and run["state"] in FINISHED else None

        return wait_for(
            finished,
            timeout,
            f"{dag_id} run {run_id} to finish",
            describe=lambda: sorted(self.task_states(dag_id, run_id).items()),
        )


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0, describe=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f"; now: {describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def wait_parsed(api: Api, *dag_ids: str, timeout: float = 180) -> None:
    """Wait until the API server knows each DAG (the DAG processor has parsed its file)."""
    for dag_id in dag_ids:
        wait_for(lambda dag_id=dag_id: api.get(f"/dags/{dag_id}"), timeout, f"DAG {dag_id} to be parsed")


def promotion_config(path: Path, prod: str, area: str, prefixes: list, consumers: list[str]) -> Path:
    """The promotion config an e2e stack's DAGs read: ``prefixes``, manifests under
    ``s3://<prod>/_greenlight/<area>``, a failed gate halting ``consumers``."""
    return write_config(
        path,
        {"prefixes": prefixes, "manifest_uri": f"s3://{prod}/_greenlight/{area}", "defaults": {"consumers": consumers}},
    )


def seed_deliveries(s3, bucket: str, prefix: str, variant: str) -> None:
    """The demo's weekly CSV deliveries (``variant`` as in demo_data.VARIANTS) under ``prefix``."""
    artefacts = demo_data.build_qa_artefacts(dt.date.today(), variant=variant)
    wanted = {
        k[len(demo_data.DELIVERY_CSV_PREFIX) :]: v
        for k, v in artefacts.items()
        if k.startswith(demo_data.DELIVERY_CSV_PREFIX)
    }
    demo_data.seed_bucket(s3, bucket, wanted, prefix=prefix, delete_extra_under=[""])

"""``artefact_promotion`` under a real scheduler (``airflow standalone``, LocalExecutor).

``dag.test()`` lets task code use the metadata DB; a real deployment does not (FACTS.md). This
test triggers the DAG with the CLI exactly as an operator would, then clears a promote task and
checks that the rerun converges.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from helpers import put, rel_listing, write_config

from greenlight import devstack

pytestmark = pytest.mark.e2e


class Api:
    def __init__(self, base: str, password: str):
        self.base = base
        req = urllib.request.Request(
            f"{base}/auth/token",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.token = json.loads(resp.read())["access_token"]

    def get(self, path: str):
        """GET a REST resource; None when it does not exist (yet) or the busy API server is slow
        to answer (2 cores shared with the scheduler and the tasks): the caller polls again."""
        req = urllib.request.Request(f"{self.base}/api/v2{path}", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            return None


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0, describe=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f"; now: {describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


@pytest.fixture(scope="module")
def stack(s3env, tmp_path_factory, buckets):
    home = tmp_path_factory.mktemp("airflow_e2e")
    qa, prod = buckets
    area = f"e2e-{int(time.time())}/"
    config = write_config(
        home / "promotion.yaml",
        {"prefixes": [f"s3://{qa}/{area}a/", f"s3://{qa}/{area}b/"], "manifest_uri": f"s3://{prod}/_greenlight/{area}"},
    )
    env = devstack.airflow_env(
        home,
        s3env,
        extra={
            "GREENLIGHT_PROMOTION_CONFIG": str(config),
            "GREENLIGHT_PROMOTION_SCHEDULE": "none",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        },
    )
    devstack.airflow(env, "db", "migrate")
    standalone = devstack.Standalone(env).start()
    try:
        api = Api(standalone.url, standalone.admin_password())
        wait_for(lambda: api.get("/dags/artefact_promotion"), 180, "the DAG to be parsed")
        yield standalone, api, area
    finally:
        standalone.stop()


def run_state(api, run_id):
    run = api.get(f"/dags/artefact_promotion/dagRuns/{run_id}")
    return run["state"] if run and run["state"] in ("success", "failed") else None


def task_instances(api, run_id) -> list[dict]:
    page = api.get(f"/dags/artefact_promotion/dagRuns/{run_id}/taskInstances")
    return page["task_instances"] if page else []


def test_trigger_then_clear_and_rerun_converges(stack, s3, buckets):
    standalone, api, area = stack
    qa, prod = buckets
    for side in "ab":
        for i in range(5):
            put(s3, qa, f"{area}{side}/obj-{i}.csv", f"{side},{i}\n")

    # Airflow 3 runs triggered without a logical date cannot be selected by `airflow tasks clear`
    # (it clears by date range), so the operator's trigger names one.
    logical = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    out = devstack.airflow(
        standalone.env,
        "dags",
        "trigger",
        "artefact_promotion",
        "--conf",
        '{"dry_run": false}',
        "--logical-date",
        logical,
        "--output",
        "json",
    ).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith("[{")]
    run_id = json.loads(line)[0]["dag_run_id"]

    state = wait_for(lambda: run_state(api, run_id), 300, f"run {run_id} to finish")
    tis = task_instances(api, run_id)
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    for side in "ab":
        assert rel_listing(s3, prod, f"{area}{side}/") == rel_listing(s3, qa, f"{area}{side}/")

    # Someone deletes a prod object behind greenlight's back; an operator clears the promote task.
    # (`-t` is a substring match in Airflow 3.3, not a regex: `^promote$` would match nothing.)
    s3.delete_object(Bucket=prod, Key=f"{area}b/obj-3.csv")
    cleared = devstack.airflow(
        standalone.env,
        "tasks",
        "clear",
        "artefact_promotion",
        "-t",
        "promote",
        "-s",
        logical,
        "-e",
        logical,
        "--downstream",
        "--yes",
    )

    def describe():
        run = api.get(f"/dags/artefact_promotion/dagRuns/{run_id}")
        tis = api.get(f"/dags/artefact_promotion/dagRuns/{run_id}/taskInstances")["task_instances"]
        return (
            run["state"],
            [(t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in tis],
            cleared.stdout[-500:],
        )

    def rerun_done():
        run = api.get(f"/dags/artefact_promotion/dagRuns/{run_id}")
        promotes = [t for t in task_instances(api, run_id) if t["task_id"] == "promote"]
        rerun = promotes and all(t["try_number"] >= 2 for t in promotes)
        return run["state"] if run and rerun and run["state"] in ("success", "failed") else None

    assert wait_for(rerun_done, 240, "the cleared run to finish", describe=describe) == "success"
    for side in "ab":
        assert rel_listing(s3, prod, f"{area}{side}/") == rel_listing(s3, qa, f"{area}{side}/")

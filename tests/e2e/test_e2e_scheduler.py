"""``artefact_promotion`` under a real scheduler (``airflow standalone``, LocalExecutor).

``dag.test()`` lets task code use the metadata DB; a real deployment does not (FACTS.md). This
test triggers the DAG with the CLI exactly as an operator would, then clears a promote task and
checks that the rerun converges.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest
from e2ehelpers import Api, promotion_config, seed_deliveries, wait_for, wait_parsed
from helpers import put, rel_listing, versions

from greenlight.dev import devstack

pytestmark = pytest.mark.e2e

CONSUMER = "commodity_hindcast_prod"


@pytest.fixture(scope="module")
def stack(s3env, s3, tmp_path_factory, buckets):
    home = tmp_path_factory.mktemp("airflow_e2e")
    qa, prod = buckets
    area = f"e2e-{int(time.time())}/"
    prefixes = [
        f"s3://{qa}/{area}a/",
        f"s3://{qa}/{area}b/",
        {"name": "deliveries", "source": f"s3://{qa}/{area}c/", "contract": "deliveries_csv"},
    ]
    config = promotion_config(home / "promotion.yaml", prod, area, prefixes, [CONSUMER])
    seed_deliveries(s3, qa, f"{area}c/", "clean")
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
    standalone = devstack.Standalone(env)
    # The halt path pauses consumers through this same API server: preset the admin password and
    # hand it to the tasks as the airflow_api connection, as a deployment would.
    password = secrets.token_urlsafe(16)
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))
    standalone.env["AIRFLOW_CONN_AIRFLOW_API"] = json.dumps(
        {"conn_type": "http", "host": standalone.url, "login": "admin", "password": password}
    )
    standalone.start()
    try:
        api = Api(standalone.url, standalone.admin_password())
        wait_parsed(api, "artefact_promotion", CONSUMER)
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
    seed_deliveries(s3, qa, f"{area}c/", "clean")  # the halt test may have left a broken delivery
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


def consumer_runs(api) -> list[dict]:
    page = api.get(f"/dags/{CONSUMER}/dagRuns?order_by=-run_after&limit=100")
    return page["dag_runs"] if page else []


def test_asset_triggered_consumer_then_halt_pauses_it(stack, s3, buckets):
    """Under the real scheduler: a verified promotion triggers the consumer through its Assets; a
    QA delivery with a renamed column halts, pauses the consumer, and no consumer run follows."""
    standalone, api, area = stack
    qa, prod = buckets

    def trigger(conf: dict) -> str:
        out = devstack.airflow(
            standalone.env, "dags", "trigger", "artefact_promotion", "--conf", json.dumps(conf), "--output", "json"
        ).stdout
        (line,) = [ln for ln in out.splitlines() if ln.startswith("[{")]
        return json.loads(line)[0]["dag_run_id"]

    for side in "ab":  # (also when this test runs alone)
        put(s3, qa, f"{area}{side}/obj-0.csv", f"{side},0\n")

    # Every prod prefix gets a verified event from this run -> the consumer is scheduled by the Assets.
    runs_before = {r["dag_run_id"] for r in consumer_runs(api)}
    run_id = trigger({})
    state = wait_for(lambda: run_state(api, run_id), 300, f"run {run_id} to finish")
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in task_instances(api, run_id)]

    def new_consumer_run_done():
        fresh = [r for r in consumer_runs(api) if r["dag_run_id"] not in runs_before]
        return fresh if fresh and all(r["state"] in ("success", "failed") for r in fresh) else None

    fresh = wait_for(new_consumer_run_done, 240, "the Asset-triggered consumer run")
    assert {r["run_type"] for r in fresh} == {"asset_triggered"} and {r["state"] for r in fresh} == {"success"}
    assert api.get(f"/dags/{CONSUMER}")["is_paused"] is False

    # QA breaks the delivery contract: the run halts, pauses the consumer, prod is untouched.
    seed_deliveries(s3, qa, f"{area}c/", "renamed_column")
    before = versions(s3, prod, f"{area}c/")
    runs_before = {r["dag_run_id"] for r in consumer_runs(api)}
    run_id = trigger({})
    assert wait_for(lambda: run_state(api, run_id), 300, f"run {run_id} to finish") == "failed"
    states = {(t["task_id"], t["map_index"]): t["state"] for t in task_instances(api, run_id)}
    assert states[("halt_prod_consumers", -1)] == "failed", states
    assert all(v == "skipped" for (task, _), v in states.items() if task in ("promote", "verify", "summary"))
    assert api.get(f"/dags/{CONSUMER}")["is_paused"] is True
    halt = api.get("/variables/greenlight_promotion_halt")
    assert json.loads(halt["value"])["paused_by_greenlight"] == [CONSUMER]
    assert versions(s3, prod, f"{area}c/") == before
    time.sleep(15)  # a few scheduler loops: an Asset event would have queued a consumer run by now
    assert {r["dag_run_id"] for r in consumer_runs(api)} == runs_before

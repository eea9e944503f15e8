"""``artefact_promotion`` on docker-compose.yaml's CeleryExecutor topology, run as local processes.

One stack for the module (``greenlight.dev.celerystack``): PostgreSQL metadata DB, Redis broker, the
api-server, scheduler, dag-processor, triggerer and two Celery workers with one task slot each, so
two tasks queued together run on different workers. The ``minio`` service is the session's
SeaweedFS server behind ``tests/faultproxy.py``, which makes one prefix's copies slow (one at a
time, 0.4 s each) so a worker can be killed in the middle of them, and answers AccessDenied when
another prefix's promotion manifest is written, until the test "fixes the permission" (an error
greenlight never retries). The ``mlflow`` service is left out: the promotion config here names no
MLflow experiment.

Everything goes through the real interfaces: runs are triggered, cleared and inspected over the
REST API, the halt pauses the consumer through the API server (connection ``airflow_api``), and
which worker ran each try is read from greenlight's task manifests.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from faultproxy import FaultProxy
from helpers import listing, put, rel_listing, versions, write_config

from greenlight.dagsupport.api import AirflowApiUnavailable
from greenlight.dev import demo_data
from greenlight.dev.celerystack import CeleryStack
from greenlight.promotion.config import load_config
from greenlight.promotion.rollback import rollback
from greenlight.storage.manifests import read_manifest_uri, safe_name

pytestmark = pytest.mark.e2e

DAG = "artefact_promotion"
CONSUMER = "commodity_hindcast_prod"
SLOW_OBJECTS = 24
COPY_DELAY_S = 0.4
HEARTBEAT_TIMEOUT_S = 30
HUGE_OBJECTS = 3999  # + one key only prod has = 4,000 keys
HUGE_SHARD = 1000


@pytest.fixture(scope="module")
def topology(s3env, s3, buckets, tmp_path_factory):
    root = tmp_path_factory.mktemp("celery_stack")
    qa, prod = buckets
    area = f"celery-{uuid.uuid4().hex[:8]}/"
    config = write_config(
        root / "promotion.yaml",
        {
            "prefixes": [
                {"name": "slow", "source": f"s3://{qa}/{area}slow/"},
                {"name": "denied", "source": f"s3://{qa}/{area}denied/"},
                {"name": "deliveries", "source": f"s3://{qa}/{area}deliveries/", "contract": "deliveries_csv"},
                # 4,000 keys at 1,000 per shard: four mapped promote tasks (docs/sharding.md).
                {"name": "huge", "source": f"s3://{qa}/{area}huge/", "shard_objects": HUGE_SHARD},
            ],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"consumers": [CONSUMER]},
        },
    )
    proxy = FaultProxy(s3env.endpoint_url).__enter__()
    minio = SimpleNamespace(endpoint_url=proxy.url, access_key=s3env.access_key, secret_key=s3env.secret_key)
    stack = CeleryStack(
        root / "stack",
        s3=minio,
        mlflow=False,
        concurrency=1,
        promotion_config=config,
        extra_env={
            "GREENLIGHT_PROMOTION_SCHEDULE": "none",  # unpausing must not start a scheduled run
            # A killed worker's task is noticed when its heartbeats stop: 30 s instead of 300 s.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        },
    )
    started = time.monotonic()
    stack.start()
    try:
        api = Api(stack)
        wait_for(lambda: api.get(f"/dags/{DAG}"), 180, "the DAG to be parsed")
        wait_for(lambda: api.get(f"/dags/{CONSUMER}"), 180, "the consumer DAG to be parsed")
        api.client.set_paused(DAG, False)  # paused at creation, as in docker-compose.yaml
        print(f"celery stack ready in {time.monotonic() - started:.0f} s")
        yield SimpleNamespace(stack=stack, api=api, proxy=proxy, area=area, qa=qa, prod=prod, config=config)
    finally:
        stack.stop()
        proxy.__exit__(None, None, None)


class Api:
    """The REST API as a user's script sees it; a busy API server (2 shared cores) is None = poll again."""

    def __init__(self, stack: CeleryStack):
        self.client = stack.api()

    def get(self, path: str):
        try:
            return self.client.get(f"/api/v2{path}")
        except AirflowApiUnavailable:
            return None

    def trigger(self, conf: dict) -> str:
        run = self.client.post(f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def task_instances(self, run_id: str) -> dict[tuple[str, int], dict]:
        page = self.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=100") or {"task_instances": []}
        return {(t["task_id"], t["map_index"]): t for t in page["task_instances"]}

    def finished(self, run_id: str) -> str | None:
        run = self.get(f"/dags/{DAG}/dagRuns/{run_id}")
        return run["state"] if run and run["state"] in ("success", "failed") else None


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0, describe=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f"; now: {describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def task_manifest(stack: CeleryStack, run_id: str, task_id: str, map_index: int = -1) -> dict | None:
    """The task manifest the listener wrote (default root: $AIRFLOW_HOME/greenlight/task_manifests)."""
    name = task_id + (f".{map_index}" if map_index >= 0 else "")
    path = Path(stack.home) / "greenlight" / "task_manifests" / DAG / safe_name(run_id) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return None


def states(api: Api, run_id: str) -> list[tuple]:
    return sorted((k[0], k[1], t["state"], t["try_number"]) for k, t in api.task_instances(run_id).items())


def copy_into(prefix: str):
    """Matches a CopyObject (PUT with x-amz-copy-source) whose destination key is under ``prefix``."""
    return lambda method, path, headers: method == "PUT" and "x-amz-copy-source" in headers and prefix in path


def manifest_write(folder: str, name_end: str):
    """Matches a plain PUT of a prefix's promotion manifest (``<folder><run>/<name>``, not its
    gate record under ``<run>/gates/``) whose file name ends in ``name_end``."""

    def match(method, path, headers):
        rest = path.split(folder, 1)[1] if folder in path else ""
        # Names that are not plain text end in a hash suffix (``…_denied~0123456789.json``).
        stem = rest.rsplit("/", 1)[-1].removesuffix(".json").split("~", 1)[0]
        return (
            method == "PUT"
            and "x-amz-copy-source" not in headers
            and rest.count("/") == 1
            and rest.endswith(".json")
            and stem.endswith(name_end)
        )

    return match


def test_promotion_spreads_over_workers_survives_a_killed_worker_and_a_cleared_failure(topology, s3):
    t, stack, api, proxy = topology, topology.stack, topology.api, topology.proxy
    qa, prod, area = t.qa, t.prod, t.area
    for i in range(SLOW_OBJECTS):
        put(s3, qa, f"{area}slow/obj-{i:02d}.csv", f"slow,{i},new\n")
    for i in range(5):
        put(s3, qa, f"{area}denied/obj-{i}.csv", f"denied,{i}\n")
    # Prod already has older versions of three keys and a key QA no longer has.
    for i in range(3):
        put(s3, prod, f"{area}slow/obj-{i:02d}.csv", f"slow,{i},old\n")
    put(s3, prod, f"{area}slow/retired.csv", "retired\n")
    before = {side: listing(s3, prod, f"{area}{side}/") for side in ("slow", "denied")}

    # The promotion role may not write the denied prefix's manifest (written before any copy).
    is_slow = copy_into(f"/{prod}/{area}slow/")
    is_denied = manifest_write(f"/{prod}/_greenlight/{area}promotions/", "_denied")
    proxy.rule = lambda m, p, h: COPY_DELAY_S if is_slow(m, p, h) else "403" if is_denied(m, p, h) else None

    run_id = api.trigger({"only": ["slow", "denied"]})

    # Mid-copy: the slow prefix's task is running and has copied some of its objects, not all.
    def running_mid_copy():
        doc = task_manifest(stack, run_id, "promote", 0)
        changed = sum(1 for k, v in listing(s3, prod, f"{area}slow/").items() if before["slow"].get(k) != v)
        return (doc, changed) if doc and doc["state"] == "running" and 2 <= changed < SLOW_OBJECTS else None

    doc, copied = wait_for(running_mid_copy, 240, "promote[slow] to be mid-copy", 0.3, lambda: states(api, run_id))
    victim = doc["worker"]
    assert victim in stack.worker_names, doc
    # A container crash: the worker, its pool process, the supervisor and the task die at once.
    # Copies the dead client still has held in the proxy are dropped, as its unsent requests would be.
    proxy.rule = lambda m, p, h: "drop" if is_slow(m, p, h) else "403" if is_denied(m, p, h) else None
    killed = stack.workers()[victim].kill()
    assert len(killed) >= 4  # worker, pool process, supervisor, task process
    wait_for(lambda: proxy.holding == 0, 30, "held copies to be dropped", 0.2)
    proxy.rule = lambda m, p, h: "403" if is_denied(m, p, h) else None
    print(f"killed {victim} (pids {killed}) after {copied} of {SLOW_OBJECTS} slow-prefix copies")

    state = wait_for(lambda: api.finished(run_id), 240, f"run {run_id} to finish", 2, lambda: states(api, run_id))
    tis = api.task_instances(run_id)
    assert state == "failed", states(api, run_id)
    assert (tis[("promote", 0)]["state"], tis[("promote", 0)]["try_number"]) == ("success", 2)
    assert (tis[("promote", 1)]["state"], tis[("promote", 1)]["try_number"]) == ("failed", 1)
    assert tis[("verify", -1)]["state"] == "upstream_failed"

    slow, denied = task_manifest(stack, run_id, "promote", 0), task_manifest(stack, run_id, "promote", 1)
    assert slow["rendered_map_index"].endswith("/slow/") and denied["rendered_map_index"].endswith("/denied/")
    survivor = next(n for n in stack.worker_names if n != victim)
    # Try 1 died with its worker (nothing was left to record its end); try 2 ran on the other one.
    assert [(x["try_number"], x["state"], x["worker"]) for x in slow["tries"]] == [
        (1, "running", victim),
        (2, "success", survivor),
    ]
    assert [(x["try_number"], x["state"], x["worker"]) for x in denied["tries"]] == [(1, "failed", survivor)]
    # The manifest could not be written: failed at once, not retried, with the denial in the record.
    assert denied["error"]["retryable"] is False and denied["error"]["will_retry"] is False
    assert "AccessDenied" in denied["error"]["message"]
    assert {x["worker"] for m in (slow, denied) for x in m["tries"]} == set(stack.worker_names)
    assert rel_listing(s3, prod, f"{area}slow/") == rel_listing(s3, qa, f"{area}slow/")
    assert listing(s3, prod, f"{area}denied/") == before["denied"]
    manifest = read_manifest_uri(slow["outputs"]["manifest"], s3)
    assert manifest["attempts"] == 2 and manifest["status"] == "complete"

    # The permission is fixed; the operator clears the failed task as the UI's Clear does.
    proxy.rule = None
    cleared = api.client.post(
        f"/api/v2/dags/{DAG}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": ["promote"],
            "only_failed": True,
            "include_downstream": True,
            "reset_dag_runs": True,
        },
    )
    assert {(ti["task_id"], ti["map_index"]) for ti in cleared["task_instances"]} >= {("promote", 1), ("verify", -1)}
    assert ("promote", 0) not in {(ti["task_id"], ti["map_index"]) for ti in cleared["task_instances"]}

    def rerun_done():
        promote = api.task_instances(run_id).get(("promote", 1), {})
        return api.finished(run_id) if promote.get("try_number", 0) >= 2 else None

    assert wait_for(rerun_done, 240, "the cleared run to finish", 2, lambda: states(api, run_id)) == "success"
    for side in ("slow", "denied"):
        assert rel_listing(s3, prod, f"{area}{side}/") == rel_listing(s3, qa, f"{area}{side}/")
    assert task_manifest(stack, run_id, "promote", 1)["worker"] in stack.worker_names

    # The run index rolls prod back exactly to before the run, across both tries and the clear.
    index = task_manifest(stack, run_id, "summary")["outputs"]["manifest"]
    result = rollback(index, s3, config=load_config(t.config))  # the config defines greenlight's domain
    # restored: 3 overwritten keys + the deleted retired.csv; deleted: every key that was new.
    assert (result["restored"], result["deleted"]) == (4, SLOW_OBJECTS - 3 + 5)
    for side in ("slow", "denied"):
        assert listing(s3, prod, f"{area}{side}/") == before[side]


def test_contract_halt_pauses_the_consumer_through_the_api(topology, s3):
    t, stack, api = topology, topology.stack, topology.api
    qa, prod, area = t.qa, t.prod, t.area
    artefacts = demo_data.build_qa_artefacts(dt.date.today(), variant="renamed_column")
    deliveries = {
        k[len(demo_data.DELIVERY_CSV_PREFIX) :]: v
        for k, v in artefacts.items()
        if k.startswith(demo_data.DELIVERY_CSV_PREFIX)
    }
    demo_data.seed_bucket(s3, qa, deliveries, prefix=f"{area}deliveries/", delete_extra_under=[""])
    before = versions(s3, prod, f"{area}deliveries/")
    api.client.set_paused(CONSUMER, False)

    run_id = api.trigger({"only": ["deliveries"]})
    state = wait_for(lambda: api.finished(run_id), 240, f"run {run_id} to finish", 2, lambda: states(api, run_id))
    tis = api.task_instances(run_id)
    assert state == "failed", states(api, run_id)
    assert tis[("halt_prod_consumers", -1)]["state"] == "failed"
    assert all(ti["state"] == "skipped" for (task, _), ti in tis.items() if task in ("promote", "verify", "summary"))
    # The task paused the consumer through the API server, as a user with the UI would.
    assert api.get(f"/dags/{CONSUMER}")["is_paused"] is True
    halt = json.loads(api.get("/variables/greenlight_promotion_halt")["value"])
    assert halt["run_id"] == run_id and halt["paused_by_greenlight"] == [CONSUMER]
    assert versions(s3, prod, f"{area}deliveries/") == before
    assert task_manifest(stack, run_id, "halt_prod_consumers")["worker"] in stack.worker_names


def test_huge_prefix_runs_in_shards_on_both_workers_and_a_killed_shard_is_retried(topology, s3):
    """One prefix of 4,000 keys with ``shard_objects: 1000``: four shards across the two workers;
    one shard's worker is killed mid-copy and the shard is retried on the other; prod equals QA,
    the deletes ran after every shard copied, and the rollback restores all shards exactly."""
    t, stack, api, proxy = topology, topology.stack, topology.api, topology.proxy
    qa, prod, area = t.qa, t.prod, t.area
    for proc in stack.workers().values():  # an earlier test may have killed one: a new container
        if not proc.running():
            proc.start()
    wait_for(lambda: stack.ping_workers() >= set(stack.worker_names), 120, "both workers to answer")
    huge = f"{area}huge/"
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: put(s3, qa, f"{huge}obj-{i:04d}.csv", f"huge,{i},new\n"), range(HUGE_OBJECTS)))
    for i in range(3):
        put(s3, prod, f"{huge}obj-{i:04d}.csv", f"huge,{i},old\n")
    put(s3, prod, f"{huge}retired.csv", "retired\n")
    before = listing(s3, prod, huge)

    # The first 100 keys (shard 1's range) copy slowly, one at a time: time to kill its worker.
    is_slow = copy_into(f"/{prod}/{huge}obj-00")
    proxy.rule = lambda m, p, h: COPY_DELAY_S if is_slow(m, p, h) else None
    run_id = api.trigger({"only": ["huge"]})

    def shard_mid_copy():
        doc = task_manifest(stack, run_id, "promote", 0)
        done = sum(1 for k, v in listing(s3, prod, f"{huge}obj-00").items() if before.get(k) != v)
        return (doc, done) if doc and doc["state"] == "running" and 2 <= done < 90 else None

    doc, copied = wait_for(shard_mid_copy, 240, "shard 1 to be mid-copy", 0.3, lambda: states(api, run_id))
    victim = doc["worker"]
    proxy.rule = lambda m, p, h: "drop" if is_slow(m, p, h) else None
    stack.workers()[victim].kill()
    wait_for(lambda: proxy.holding == 0, 30, "held copies to be dropped", 0.2)
    proxy.rule = None
    print(f"killed {victim} after {copied} copies of shard 1")

    state = wait_for(lambda: api.finished(run_id), 300, f"run {run_id} to finish", 2, lambda: states(api, run_id))
    tis = api.task_instances(run_id)
    assert state == "success", states(api, run_id)
    assert sorted(i for (task, i) in tis if task == "promote") == [0, 1, 2, 3]
    assert (tis[("promote", 0)]["state"], tis[("promote", 0)]["try_number"]) == ("success", 2)
    docs = [task_manifest(stack, run_id, "promote", i) for i in range(4)]
    assert docs[0]["rendered_map_index"].endswith("/huge/ shard 1/4")
    survivor = next(n for n in stack.worker_names if n != victim)
    assert [(x["try_number"], x["worker"]) for x in docs[0]["tries"]] == [(1, victim), (2, survivor)]
    # The shards ran on both workers.
    assert {x["worker"] for d in docs for x in d["tries"]} == set(stack.worker_names)
    assert rel_listing(s3, prod, huge) == rel_listing(s3, qa, huge)

    summary = task_manifest(stack, run_id, "summary")["outputs"]
    index = read_manifest_uri(summary["manifest"], s3)
    assert [r["shard"]["index"] for r in index["prefixes"]] == [0, 1, 2, 3]
    assert summary["deleted"] == 1
    # Every QA key is a copy in exactly one part: the killed try's manifest (written before its
    # copies) is merged by the retry, which records as done what it copied itself.
    parts = [read_manifest_uri(r["manifest"], s3) for r in index["prefixes"]]
    copies = [a["key"] for p in parts for a in p["actions"] if a["action"] == "copy"]
    assert len(copies) == len(set(copies)) == HUGE_OBJECTS
    assert parts[0]["attempts"] == 2 and all(p["status"] == "complete" for p in parts)

    # Restarted for the next test (a new container); then the rollback restores every shard.
    stack.workers()[victim].start()
    result = rollback(summary["manifest"], s3, config=load_config(t.config))
    assert (result["restored"], result["deleted"]) == (4, HUGE_OBJECTS - 3)
    assert listing(s3, prod, huge) == before

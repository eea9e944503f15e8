"""Every greenlight DAG, triggered once under a real scheduler on the stack ``make airflow`` starts.

The stack (``local_stack``, tests/e2e/conftest.py) is :func:`greenlight.dev.airflowstack.start`:
nothing is configured by the test. These are the first real-scheduler runs of
``feature_materialization`` and ``artefact_reconciliation`` (FACTS.md: task code that touches the
metadata DB passes ``dag.test()`` and fails here).
"""

from __future__ import annotations

import hashlib

import pytest
from helpers import rel_listing

from greenlight.dev import demo

# The session's local stack starts inside the first test's timeout: minutes on a shared machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

RUN_TIMEOUT = 1200  # seconds: generous; a run takes ~1 min alone, far longer when the machine is shared
PROMOTED = ("weather/", "deliveries/", "usda/", "wasde/")


def prod_objects(client) -> dict[str, tuple[int, str]]:
    """What prod serves under the promoted prefixes (key -> size, ETag): greenlight's own records and
    what other DAGs write to the bucket (the dataset DAGs' stores under ``datasets/``) left out."""
    return {k: v for k, v in rel_listing(client, demo.PROD_BUCKET, "").items() if k.startswith(PROMOTED)}


def qa_objects(client) -> dict[str, tuple[int, str]]:
    """What QA delivered, without the QA sign-off marker (process state, never promoted)."""
    return {
        k: v
        for k, v in rel_listing(client, demo.QA_BUCKET, "").items()
        if k.startswith(PROMOTED) and k != demo.SIGNOFF_MARKER
    }


def assert_succeeded(api, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    state = api.wait_finished(dag_id, run_id, RUN_TIMEOUT)
    states = api.task_states(dag_id, run_id)
    assert state == "success", f"{dag_id} run {run_id} {state}: {sorted(states.items())}"
    return states


def test_each_dag_runs_green_under_the_scheduler(local_stack, stack_api):
    api, client = stack_api, local_stack.client()
    prod_before = prod_objects(client)

    # The three independent DAGs run side by side, as they would on their schedules.
    runs = {
        "artefact_promotion": api.trigger("artefact_promotion", {"dry_run": False}),
        "feature_materialization": api.trigger("feature_materialization"),
        "artefact_reconciliation": api.trigger("artefact_reconciliation"),
    }

    # Promotion: prod now serves exactly what QA delivered.
    states = assert_succeeded(api, "artefact_promotion", runs["artefact_promotion"])
    assert sum(1 for task, _ in states if task == "promote") == 6, states
    assert prod_objects(client) == qa_objects(client)
    summary = api.xcom("artefact_promotion", runs["artefact_promotion"], "summary")
    assert summary["copied"] == len(qa_objects(client)) - sum(1 for k in prod_before if k in qa_objects(client))

    # Features: both views materialized from PostgreSQL into Redis and parity-checked.
    states = assert_succeeded(api, "feature_materialization", runs["feature_materialization"])
    assert {k: v for k, v in states.items() if k[0] in ("materialize", "parity")} == {
        ("materialize", 0): "success",
        ("materialize", 1): "success",
        ("parity", 0): "success",
        ("parity", 1): "success",
    }
    for index in (0, 1):
        parity = api.xcom("feature_materialization", runs["feature_materialization"], "parity", index)
        assert parity["checked"] > 0, parity

    # Reconciliation: the two objects the DVC remote lost are found and put back.
    assert_succeeded(api, "artefact_reconciliation", runs["artefact_reconciliation"])
    report = api.xcom("artefact_reconciliation", runs["artefact_reconciliation"], "report")
    assert report["targets"]["yields"]["missing"] == 2, report
    assert report["targets"]["yields"]["repaired"] == 2, report
    assert report["unrecoverable"] == 0, report
    bucket, prefix = local_stack.dvc_remote.removeprefix("s3://").split("/", 1)
    remote = rel_listing(client, bucket, prefix)
    for path in sorted((local_stack.dvc_repo / "data" / "yields").glob("*.csv")):
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        assert f"files/md5/{md5[:2]}/{md5[2:]}" in remote, f"{path.name} still missing from {local_stack.dvc_remote}"

    # Rollback of that promotion, from its run index manifest: prod is as it was before.
    manifest = summary["manifest"]
    assert manifest.endswith("/index.json"), summary
    rollback = api.trigger("artefact_rollback", {"manifest": manifest})
    assert_succeeded(api, "artefact_rollback", rollback)
    assert prod_objects(client) == prod_before

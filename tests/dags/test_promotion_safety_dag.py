"""``artefact_promotion`` under concurrency (``dag.test()``, real SeaweedFS): a run refuses while
another writer (the CLI, a rollback) holds a prod prefix, or waits with ``lease_wait``; a QA object
changed after the gate is never promoted (the prefix fails without retry); a rerun of the whole run
gates and promotes the new snapshot."""

from __future__ import annotations

import json
import threading

import pytest
from dagrun import run_dag
from helpers import body, put, rel_listing, versions, write_config

from greenlight.promotion import run
from greenlight.promotion.config import parse_config
from greenlight.storage.lease import Lease

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def one_prefix(tmp_path, monkeypatch, buckets, area):
    qa, prod = buckets
    doc = {
        "prefixes": [f"s3://{qa}/{area}d/"],
        "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        "defaults": {"stale_after_hours": None},
    }
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(write_config(tmp_path / "promotion.yaml", doc)))
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(tmp_path / "task_manifests"))
    return parse_config(doc)


def task_error(tmp_path, task_file: str) -> str:
    (path,) = list((tmp_path / "task_manifests").rglob(task_file))
    return json.loads(path.read_text())["error"]["message"]


def test_dag_refuses_while_another_run_holds_the_prefix_and_waits_when_asked(one_prefix, s3, buckets, area, tmp_path):
    qa, prod = buckets
    put(s3, qa, f"{area}d/x.csv", "x")
    holder = Lease(
        s3, one_prefix.manifest_uri, f"s3://{prod}/{area}d/", run_id="cli__by-hand", operation="promote"
    ).acquire()
    try:
        state, tis, _, _ = run_dag("artefact_promotion", {})
        assert state == "failed"
        assert tis["plan"] == ("failed", 1)  # refused at once, not retried
        message = task_error(tmp_path, "plan.json")
        assert "'cli__by-hand'" in message and "holds the lease until" in message
        assert rel_listing(s3, prod, f"{area}d/") == {}

        threading.Timer(3.0, holder.release).start()
        state, tis, _, _ = run_dag("artefact_promotion", {"lease_wait": 120})
    finally:
        holder.release()
    assert state == "success", tis
    assert rel_listing(s3, prod, f"{area}d/") == rel_listing(s3, qa, f"{area}d/")


def test_qa_changed_after_the_gate_is_not_promoted_and_a_rerun_gates_the_new_snapshot(
    one_prefix, s3, buckets, area, tmp_path, monkeypatch
):
    qa, prod = buckets
    put(s3, qa, f"{area}d/a.csv", "a-v1")
    put(s3, qa, f"{area}d/b.csv", "b-v1")
    real_gate = run.gate

    def gate_then_qa_writer(*args, **kwargs):
        """The real gate; then a QA writer changes a file (a second actor: not a mock of greenlight)."""
        result = real_gate(*args, **kwargs)
        put(s3, qa, f"{area}d/b.csv", "b-v2 written after validation")
        return result

    monkeypatch.setattr(run, "gate", gate_then_qa_writer)
    before = versions(s3, prod, f"{area}d/")

    state, tis, _, _ = run_dag("artefact_promotion", {})

    assert state == "failed"
    assert tis["promote.0"] == ("failed", 1)  # no retry
    message = task_error(tmp_path, "promote.0.json")
    assert "QA changed after validation" in message and f"s3://{qa}/{area}d/b.csv" in message
    assert versions(s3, prod, f"{area}d/") == before  # nothing promoted, not even a.csv

    monkeypatch.setattr(run, "gate", real_gate)
    state, tis, _, _ = run_dag("artefact_promotion", {})  # the whole run again: plan and gate anew
    assert state == "success", tis
    assert body(s3, prod, f"{area}d/b.csv") == b"b-v2 written after validation"

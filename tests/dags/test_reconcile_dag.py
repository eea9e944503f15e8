"""The artefact_reconciliation DAG through ``dag.test()`` on real pieces: a git + DVC repo pushed to
SeaweedFS with objects made missing (tests/reconcilefixtures.py), repaired from cache and fallback,
the unrecoverable one failing the report task without retry (the CLI: tests/integration/test_reconcile.py)."""

from __future__ import annotations

import json

import pytest
import reconcilefixtures
from dagrun import run_dag
from reconcilefixtures import DVC_BUCKET, object_exists, reconcile_config

from greenlight.storage.manifests import safe_name

golden = reconcilefixtures.golden  # fixtures shared with tests/integration/test_reconcile.py
scenario = reconcilefixtures.scenario


@pytest.mark.usefixtures("airflow_db")
def test_dag_repairs_and_fails_listing_unrecoverable(scenario, golden, s3, tmp_path, monkeypatch, area):
    report_uri = f"s3://{DVC_BUCKET}/_reports/{area}"
    targets = [
        scenario.target(),
        {"name": "clean", "kind": "git_dvc", "repo": str(golden.path), "rev": golden.clean_rev},
    ]
    monkeypatch.setenv("GREENLIGHT_RECONCILE_CONFIG", str(reconcile_config(tmp_path, targets, report_uri)))

    state, tis, xcoms, run_id = run_dag("artefact_reconciliation", {"repair": True})

    assert state == "failed"
    assert {k: v[0] for k, v in tis.items()} == {
        "targets": "success",
        "reconcile_target.0": "success",
        "reconcile_target.1": "success",
        "report": "failed",
        "check_run": "upstream_failed",  # the run fails on report alone
    }
    assert tis["report"][1] == 1  # unrecoverable: no retry
    assert object_exists(s3, DVC_BUCKET, scenario.keys["img1"]) and object_exists(s3, DVC_BUCKET, scenario.keys["dir"])
    assert not object_exists(s3, DVC_BUCKET, scenario.keys["table"])
    prefix = f"_reports/{area}{safe_name(run_id)}/"
    report = json.loads(s3.get_object(Bucket=DVC_BUCKET, Key=prefix + "report.json")["Body"].read())
    assert report["totals"]["repaired"] == 4 and report["totals"]["unrecoverable"] == 1
    assert (
        b"| datasets | dvc | 7 | 5 | 4 | 1 | 0 |"
        in s3.get_object(Bucket=DVC_BUCKET, Key=prefix + "report.md")["Body"].read()
    )

    state, tis, xcoms, _ = run_dag("artefact_reconciliation", {"only": ["clean"]})
    assert state == "success", tis
    summary = xcoms["report"] if isinstance(xcoms["report"], dict) else json.loads(xcoms["report"])
    assert summary["targets"] == {
        "clean": {"checked": 1, "missing": 0, "repaired": 0, "unrecoverable": 0, "outstanding": 0, "orphans": 0}
    }

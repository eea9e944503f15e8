"""Secrets never leave the artefact_reconciliation DAG: credentials planted in a reconcile ``repo:``
git URL appear in no XCom, task manifest, report, task log or output of a ``dag.test()`` run, on the
success and the failure path (the CLI and the demo: tests/integration/test_secrets.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import secretfixtures
from dagrun import run_dag
from secretfixtures import FAST_FAIL, assert_clean, files_text, planted_reconcile_config

git_http = secretfixtures.git_http  # fixture shared with tests/integration/test_secrets.py


@pytest.mark.usefixtures("airflow_db")
def test_reconcile_dag_redacts_credentials_in_xcom_task_manifests_and_logs(
    s3env, git_http, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("GREENLIGHT_RECONCILE_CONFIG", str(planted_reconcile_config(tmp_path, git_http)))
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(tmp_path / "task_manifests"))
    for name, value in FAST_FAIL.items():
        monkeypatch.setenv(name, value)

    # The MLflow target is left to the CLI test: a refused connection is transient, retried with backoff.
    state, tis, xcoms, _ = run_dag("artefact_reconciliation", {"only": ["ok", "dead_git"]})

    assert state == "failed"  # the dead git remote cannot be reached
    assert tis["reconcile_target.0"][0] == "success"
    assert_clean("XCom", json.dumps(xcoms, default=str))
    manifests = files_text(tmp_path / "task_manifests")
    assert manifests and "reconcile_target" in manifests
    assert_clean("task manifests", manifests)
    assert_clean("reports", files_text(tmp_path / "reports"))
    out, err = capfd.readouterr()
    assert_clean("the run's output and task logs", out + err)
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if logs.exists():
        assert_clean("Airflow task log files", files_text(logs))

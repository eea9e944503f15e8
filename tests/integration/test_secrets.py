"""Secrets never leave: credentials planted in a reconcile ``repo:`` git URL, an MLflow tracking URI
and the demo's dvc command lines appear in no report, manifest, XCom, task manifest, error message,
log line or stdout — on the success path and the failure paths (real git over HTTP, real CLI; the
rules themselves: tests/unit/test_redact.py; the DAG through ``dag.test()``: tests/dags/test_secrets_dag.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import secretfixtures
from secretfixtures import FAST_FAIL, PASSWORD, assert_clean, files_text, planted_reconcile_config

ROOT = Path(__file__).resolve().parents[2]
git_http = secretfixtures.git_http  # fixture shared with tests/dags/test_secrets_dag.py


def test_reconcile_cli_redacts_credentials_on_success_and_failure(s3env, git_http, tmp_path):
    config = planted_reconcile_config(tmp_path, git_http)
    env = {**os.environ, **s3env.env(), **FAST_FAIL, "PYTHONPATH": str(ROOT / "include")}
    outputs = {}
    for target in ("ok", "dead_git", "dead_mlflow"):
        proc = subprocess.run(
            [sys.executable, "-m", "greenlight", "-v", "reconcile", "--config", str(config), "--only", target],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        outputs[target] = proc
        assert_clean(f"stdout/stderr of reconcile --only {target}", proc.stdout + proc.stderr)
    assert outputs["ok"].returncode == 0, outputs["ok"].stderr[-2000:]
    assert outputs["dead_git"].returncode != 0 and outputs["dead_mlflow"].returncode != 0
    written = files_text(tmp_path / "reports")
    assert_clean("reconcile reports", written)
    assert "x-access-token:***@" in written  # recorded, with the credential redacted


def test_demo_dvc_command_line_secrets_are_redacted(tmp_path):
    from greenlight.dev.demo import run_command

    dvc = str(Path(sys.executable).parent / "dvc")
    with pytest.raises(RuntimeError) as caught:
        run_command([dvc, "remote", "modify", "--local", "nope", "secret_access_key", PASSWORD], tmp_path)  # not a repo
    assert_clean("the demo's error message", str(caught.value))
    assert "secret_access_key ***" in str(caught.value)

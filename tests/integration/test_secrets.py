"""Secrets never leave: credentials planted in a reconcile ``repo:`` git URL, an MLflow tracking URI
and the demo's dvc command lines appear in no report, manifest, XCom, task manifest, error message,
log line or stdout — on the success path and the failure paths (real git over HTTP, real CLI,
real Airflow ``dag.test()``)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from greenlight.dev.localstack import free_port
from greenlight.redact import clean_message, redact, redact_argv, redact_text

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_" + uuid.uuid4().hex + "PLANTEDTOKEN"
PASSWORD = "pw-" + uuid.uuid4().hex + "PLANTEDPW"
DEAD_TOKEN = "glpat-" + uuid.uuid4().hex + "PLANTEDDEAD"
PLANTED = (TOKEN, PASSWORD, DEAD_TOKEN)


def assert_clean(where: str, text: str) -> None:
    for secret in PLANTED:
        assert secret not in text, f"planted secret found in {where}"


def files_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(root.rglob("*")) if p.is_file())


def test_redaction_rules():
    assert redact_text(f"https://x-access-token:{TOKEN}@github.com/o/r.git") == (
        "https://x-access-token:***@github.com/o/r.git"
    )
    assert (
        redact_text(f"clone https://{TOKEN}@github.com/o/r.git failed") == "clone https://***@github.com/o/r.git failed"
    )
    assert redact_text(f"postgresql://app:{PASSWORD}@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_text(f"http://h/x?a=1&token={TOKEN}&b=2") == "http://h/x?a=1&token=***&b=2"
    # Not credentials: S3 keys, ssh user names, e-mail addresses stay readable.
    for plain in ("s3://prod-x/a@b/c.csv", "ssh://git@github.com/o/r.git", "ops@example.com", "date=2026-01-01"):
        assert redact_text(plain) == plain
    assert redact({"password": PASSWORD, "repo": f"https://u:{PASSWORD}@h/r", "key": "a/b.csv"}) == {
        "password": "***",
        "repo": "https://u:***@h/r",
        "key": "a/b.csv",
    }
    assert PASSWORD not in redact_argv(["dvc", "remote", "modify", "r", "secret_access_key", PASSWORD])
    assert PASSWORD not in clean_message(ValueError(f"cannot reach http://u:{PASSWORD}@h"))


@pytest.fixture(scope="module")
def git_http(tmp_path_factory):
    """A git repository served over (dumb) HTTP on 127.0.0.1: clone URLs may carry credentials."""
    base = tmp_path_factory.mktemp("githttp")
    work = base / "work"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "README").write_text("pipeline\n")
    subprocess.run(["git", "-C", str(work), "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "init"], check=True, env=env)
    served = base / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "repo.git")], check=True, env=env)
    subprocess.run(["git", "-C", str(served / "repo.git"), "update-server-info"], check=True, env=env)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reconcile_config(tmp_path: Path, git_http: str) -> Path:
    dead = free_port()
    path = tmp_path / "reconcile.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "report_uri": str(tmp_path / "reports"),
                "targets": [
                    {"name": "ok", "kind": "git_dvc", "repo": f"http://x-access-token:{TOKEN}@{git_http}/repo.git"},
                    {"name": "dead_git", "kind": "git_dvc", "repo": f"http://{DEAD_TOKEN}@127.0.0.1:{dead}/r.git"},
                    {"name": "dead_mlflow", "kind": "mlflow", "tracking_uri": f"http://gl:{PASSWORD}@127.0.0.1:{dead}"},
                ],
            }
        )
    )
    return path


FAST_FAIL = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3", "GIT_TERMINAL_PROMPT": "0"}


def test_reconcile_cli_redacts_credentials_on_success_and_failure(s3env, git_http, tmp_path):
    config = reconcile_config(tmp_path, git_http)
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


@pytest.mark.usefixtures("airflow_db")
def test_reconcile_dag_redacts_credentials_in_xcom_task_manifests_and_logs(
    s3env, git_http, tmp_path, monkeypatch, capfd
):
    from dagrun import run_dag

    monkeypatch.setenv("GREENLIGHT_RECONCILE_CONFIG", str(reconcile_config(tmp_path, git_http)))
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


def test_demo_dvc_command_line_secrets_are_redacted(tmp_path):
    from greenlight.dev.demo import _sh

    dvc = str(Path(sys.executable).parent / "dvc")
    with pytest.raises(RuntimeError) as caught:
        _sh([dvc, "remote", "modify", "--local", "nope", "secret_access_key", PASSWORD], tmp_path)  # not a repo
    assert_clean("the demo's error message", str(caught.value))
    assert "secret_access_key ***" in str(caught.value)

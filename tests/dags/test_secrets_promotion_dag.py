"""Secrets never leave a failed ``artefact_promotion`` run (issue P7 point 7): an MLflow tracking URI
with a password appears in no task manifest, XCom, log line or manifest object.

The MLflow server is a stub HTTP server that answers every request "no such experiment": real MLflow
client code talks to it over HTTP with the planted credentials, and the preflight fails with a
configuration error (not retried), as it would against a real server missing the experiment."""

from __future__ import annotations

import json
import os
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from dagrun import run_dag
from helpers import put
from secretfixtures import http_server

PASSWORD = "pw-" + uuid.uuid4().hex + "PLANTEDPW"


class NoSuchExperiment(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def mlflow_stub():
    with http_server(NoSuchExperiment) as address:
        yield address


def text_of(s3, bucket: str, prefix: str) -> str:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return "\n".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode(errors="replace") for k in keys)


@pytest.mark.usefixtures("airflow_db")
def test_failed_promotion_run_records_no_mlflow_password(s3, buckets, area, tmp_path, mlflow_stub, monkeypatch, capfd):
    from helpers import write_config

    qa, prod = buckets
    put(s3, qa, f"{area}data/part-0.csv", "a,b\n1,2\n")
    config = write_config(
        tmp_path / "promotion.yaml",
        {
            "prefixes": [f"s3://{qa}/{area}data/"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None, "mlflow_experiments": ["qa-training"]},
        },
    )
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(config))
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", f"s3://{prod}/_task_manifests/{area}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://greenlight:{PASSWORD}@{mlflow_stub}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    state, tis, xcoms, _ = run_dag("artefact_promotion", {"dry_run": False})

    assert state == "failed"
    failed = [t for t, (st, _) in tis.items() if st == "failed"]
    assert failed == ["preflight"], tis
    assert tis["preflight"][1] == 1  # a configuration error: failed without a retry
    manifests = text_of(s3, prod, f"_task_manifests/{area}")
    # The failure is recorded naming the experiment and the server, with its password redacted.
    assert "qa-training" in manifests and f"greenlight:***@{mlflow_stub}" in manifests
    assert PASSWORD not in manifests, "planted password in the task manifests"
    assert PASSWORD not in json.dumps(xcoms, default=str), "planted password in XCom"
    assert PASSWORD not in text_of(s3, prod, f"_greenlight/{area}"), "planted password in promotion manifests"
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err, "planted password in the run's output"
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if logs.exists():
        text = "\n".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())
        assert PASSWORD not in text, "planted password in Airflow's task log files"

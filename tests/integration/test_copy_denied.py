"""A copy refused with AccessDenied fails the promotion without retry, naming the key.

The S3 server is the real SeaweedFS; only the one denied CopyObject is answered by
:class:`faultproxy.FaultProxy` (SeaweedFS's single test identity may write everywhere, and
per-key policies cannot be set on it). Every other request of the run reaches the real server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import listing, put, write_config

from greenlight.triage import classify

ROOT = Path(__file__).resolve().parents[2]


def config(buckets, area) -> dict:
    qa, prod = buckets
    return {
        "prefixes": [f"s3://{qa}/{area}d/"],
        "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        "defaults": {"stale_after_hours": None, "max_delete_fraction": 1.0},
    }


@pytest.fixture
def denied(s3env, s3, buckets, area):
    """QA holds three objects; the proxy denies the CopyObject of ``d/secret.csv`` into prod."""
    qa, prod = buckets
    for name in ("a.csv", "secret.csv", "z.csv"):
        put(s3, qa, f"{area}d/{name}", f"{name}\n")
    put(s3, prod, f"{area}d/old.csv", "prod only: deleted only if every copy succeeded\n")
    target = f"/{prod}/{area}d/secret.csv"
    attempts: list[str] = []

    def rule(method, path, headers):
        if method == "PUT" and path.split("?")[0] == target and headers.get("x-amz-copy-source"):
            attempts.append(path)
            return "403"
        return None

    with FaultProxy(s3env.endpoint_url) as proxy:
        proxy.rule = rule
        yield proxy, attempts, f"s3://{qa}/{area}d/secret.csv"


def test_the_promote_task_fails_without_retry_and_names_the_denied_key(
    denied, s3env, s3, buckets, area, tmp_path, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    from greenlight.dagsupport import promotion as tasks

    proxy, attempts, key = denied
    qa, prod = buckets
    conn = json.loads(s3env.airflow_conn())
    conn["extra"]["endpoint_url"] = proxy.url
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(write_config(tmp_path / "p.yaml", config(buckets, area))))
    before = listing(s3, prod, f"{area}d/")

    (planned,) = tasks.plan(None, run_id="denied-1", dry_run=False)
    with pytest.raises(AirflowFailException) as caught:  # Airflow's "fail now, no retry"
        tasks.promote(planned, run_id="denied-1", dry_run=False)

    message = str(caught.value)
    assert message.startswith("[permission] ")
    assert key in message and "AccessDenied" in message
    assert "1 of 3 copies failed" in message
    assert classify(caught.value).retryable is False
    assert len(attempts) == 1  # the denied copy was not retried by the client either
    after = listing(s3, prod, f"{area}d/")
    assert f"{area}d/old.csv" in after  # no delete ran after a failed copy
    assert f"{area}d/secret.csv" not in after and len(after) == len(before) + 2


def test_cli_promote_exits_1_naming_the_denied_key(denied, s3env, buckets, area, tmp_path):
    proxy, attempts, key = denied
    path = write_config(tmp_path / "p.yaml", config(buckets, area))
    env = {**os.environ, **s3env.env(), "AWS_ENDPOINT_URL": proxy.url, "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", "promote", "--config", str(path), "--run-id", "denied-cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1, proc.stderr[-2000:]
    (error,) = summary["errors"]
    assert key in error and "AccessDenied" in error
    assert len(attempts) == 1

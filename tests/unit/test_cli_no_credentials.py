"""A new user's first ``greenlight promote`` without S3 credentials in the env.

It must say which env vars the CLI reads (the DAGs use Airflow connections instead), not print a
botocore traceback. No S3 server is needed: botocore refuses to sign before sending anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_promote_without_credentials_names_the_env_vars(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GREENLIGHT_"))}
    env.update(
        HOME=str(tmp_path),  # no ~/.aws
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # never reached
        PYTHONPATH=str(ROOT / "include"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", "promote", "--config", "include/config/promotion.yaml", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "permission"
    assert "NoCredentialsError" in summary["error"]
    assert "AWS_ACCESS_KEY_ID" in summary["hint"] and "AWS_ENDPOINT_URL" in summary["hint"]
    assert "Traceback" not in proc.stderr
    assert "AWS_ACCESS_KEY_ID" in proc.stderr

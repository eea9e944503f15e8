"""Secrets never leave the promotion and rollback failure paths (issue P7 point 7).

Planted credentials — an MLflow tracking URI with a password, a presigned manifest URL, a wrong S3
secret key — must appear in no stdout/stderr line and no object the failed run wrote, while the
message still says what went wrong. Real CLI processes against the real S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import secretfixtures
from helpers import listing, put, write_config

from greenlight.dev.localstack import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-" + uuid.uuid4().hex + "PLANTEDPW"
SIGNATURE = "sig" + uuid.uuid4().hex + "PLANTEDSIG"
WRONG_SECRET = "wrong-" + uuid.uuid4().hex + "PLANTEDKEY"
PLANTED = (PASSWORD, SIGNATURE, WRONG_SECRET)


def assert_clean(where: str, text: str) -> None:
    secretfixtures.assert_clean(where, text, PLANTED)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "-v", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "include"), **env},
        timeout=300,
    )


def written_under(s3, bucket: str, prefix: str) -> str:
    keys = sorted(listing(s3, bucket, prefix))
    return "\n".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode(errors="replace") for k in keys)


def seeded_config(tmp_path, s3, buckets, area, **defaults) -> Path:
    qa, prod = buckets
    for i in range(3):
        put(s3, qa, f"{area}data/part-{i}.csv", f"a,b\n{i},{i}\n")
    return write_config(
        tmp_path / "promotion.yaml",
        {
            "prefixes": [f"s3://{qa}/{area}data/"],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None, **defaults},
        },
    )


def test_promote_failing_on_an_unreachable_mlflow_with_a_password_leaks_nothing(s3, buckets, area, tmp_path):
    qa, prod = buckets
    config = seeded_config(tmp_path, s3, buckets, area, mlflow_experiments=["qa-training"])
    dead = free_port()
    env = {
        "MLFLOW_TRACKING_URI": f"http://greenlight:{PASSWORD}@127.0.0.1:{dead}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
    }

    proc = cli("promote", "--config", str(config), "--no-progress", env=env)

    assert proc.returncode != 0, proc.stdout
    assert_clean("promote's stdout and stderr", proc.stdout + proc.stderr)
    assert f"127.0.0.1:{dead}" in proc.stdout + proc.stderr  # the message still says which server failed
    assert listing(s3, prod, f"{area}data/") == {}  # refused in preflight: prod untouched
    assert_clean("what the failed run wrote under manifest_uri", written_under(s3, prod, f"_greenlight/{area}"))


def test_rollback_of_a_presigned_manifest_url_is_refused_without_echoing_its_signature(s3, buckets, area, tmp_path):
    qa, prod = buckets
    config = seeded_config(tmp_path, s3, buckets, area)
    manifest = (
        f"https://{prod}.s3.example.invalid/_greenlight/{area}promotions/x/index.json"
        f"?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature={SIGNATURE}"
    )

    proc = cli("rollback", "--config", str(config), "--manifest", manifest, env={})

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_clean("rollback's stdout and stderr", proc.stdout + proc.stderr)
    assert "X-Amz-Signature=***" in proc.stdout + proc.stderr  # named, with the signature redacted
    assert written_under(s3, prod, f"_greenlight/{area}") == ""  # refused before writing anything


def test_promote_and_rollback_with_a_wrong_secret_key_fail_without_printing_it(s3, buckets, area, tmp_path):
    qa, prod = buckets
    config = seeded_config(tmp_path, s3, buckets, area)
    ok = cli("promote", "--config", str(config), "--no-progress", env={})
    assert ok.returncode == 0, ok.stderr[-2000:]
    manifest = next(k for k in listing(s3, prod, f"_greenlight/{area}promotions/") if k.endswith("/index.json"))
    before = listing(s3, prod, f"{area}data/")
    written_before = written_under(s3, prod, f"_greenlight/{area}")
    wrong = {"AWS_SECRET_ACCESS_KEY": WRONG_SECRET}

    promote = cli("promote", "--config", str(config), "--no-progress", env=wrong)
    rollback = cli("rollback", "--config", str(config), "--manifest", f"s3://{prod}/{manifest}", env=wrong)

    for name, proc in (("promote", promote), ("rollback", rollback)):
        assert proc.returncode != 0, f"{name} succeeded with a wrong secret key"
        assert_clean(f"{name}'s stdout and stderr", proc.stdout + proc.stderr)
    assert listing(s3, prod, f"{area}data/") == before  # nothing restored or deleted
    assert written_under(s3, prod, f"_greenlight/{area}") == written_before  # and no manifest written

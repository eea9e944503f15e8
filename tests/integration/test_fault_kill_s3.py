"""Fault test: the S3 server dies in the middle of a promotion.

An own SeaweedFS server (not the session one) is killed with SIGKILL while
``python -m greenlight promote`` is copying, then restarted on the same data and port. Rerunning
the promotion with the same run id (what clearing the ``promote`` task does) must converge to QA,
and the manifest must still roll prod back exactly to the state before the *first* attempt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import listing, rel_listing, write_config

from greenlight.dev.localstack import free_port, start_seaweedfs
from greenlight.storage.manifests import safe_name
from greenlight.storage.s3 import make_client, object_state

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = 1500


@pytest.fixture
def own_server(tmp_path):
    key, secret = "gl-fault-" + uuid.uuid4().hex[:6], uuid.uuid4().hex
    port = free_port()
    data = tmp_path / "weed"
    state = {"server": start_seaweedfs(data, key, secret, s3_port=port)}

    def restart():
        state["server"] = start_seaweedfs(data, key, secret, s3_port=port)
        return state["server"]

    try:
        yield state, restart
    finally:
        state["server"].stop()


def _cli(server, *args, wait=True):
    env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenlight", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    return proc.returncode, json.loads(out.strip().splitlines()[-1]), err


def test_kill_s3_mid_promotion_then_rerun_converges_and_rolls_back_exactly(own_server, tmp_path):
    state, restart = own_server
    server = state["server"]
    s3 = make_client(
        endpoint_url=server.endpoint_url, access_key=server.access_key, secret_key=server.secret_key, max_pool=32
    )
    for bucket in ("qa-fault", "prod-fault"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put_all(generation: str):
        with ThreadPoolExecutor(32) as pool:
            list(
                pool.map(
                    lambda i: s3.put_object(Bucket="qa-fault", Key=f"d/{i:05d}.csv", Body=f"{generation},{i}\n"),
                    range(OBJECTS),
                )
            )

    cfg = str(
        write_config(
            tmp_path / "promotion.yaml",
            {
                "prefixes": ["s3://qa-fault/d/"],
                "manifest_uri": "s3://prod-fault/_greenlight/",
                "defaults": {"stale_after_hours": None},
                "workers": 8,  # a slower copy, so the kill lands mid-promotion
            },
        )
    )
    put_all("v1")
    code, _, err = _cli(server, "promote", "--config", cfg, "--run-id", "night-1")
    assert code == 0, err
    before_first_attempt = listing(s3, "prod-fault", "d/")
    put_all("v2")  # every object changes

    proc = _cli(server, "promote", "--config", cfg, "--run-id", "night-2", wait=False)
    manifest_key = f"_greenlight/promotions/night-2/{safe_name('prod-fault/d/')}.json"
    deadline = time.monotonic() + 120
    while True:  # the pending manifest exists = copies are starting
        if object_state(s3, "prod-fault", manifest_key) is not None:
            break
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"no pending manifest {manifest_key} within 120 s (promotion exit {proc.poll()})")
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(server.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = proc.communicate(timeout=600)
    print(f"promotion gave up {time.monotonic() - killed_at:.1f}s after the kill")
    assert proc.returncode == 1, (out[-2000:], err[-2000:])  # a failure, not a refusal or a success

    server = restart()
    s3 = make_client(
        endpoint_url=server.endpoint_url, access_key=server.access_key, secret_key=server.secret_key, max_pool=32
    )
    partial = rel_listing(s3, "prod-fault", "d/")
    qa = rel_listing(s3, "qa-fault", "d/")
    done = sum(1 for k, v in partial.items() if v == qa[k])
    assert 0 < done < OBJECTS, f"the kill should land mid-promotion ({done} of {OBJECTS} copied)"

    # Clear-and-rerun: same run id -> it does only what is missing and converges.
    code, summary, err = _cli(server, "promote", "--config", cfg, "--run-id", "night-2")
    assert code == 0, err
    assert rel_listing(s3, "prod-fault", "d/") == qa
    manifest = json.loads(s3.get_object(Bucket="prod-fault", Key=manifest_key)["Body"].read())
    assert manifest["attempts"] == 2 and manifest["status"] == "complete"

    # The manifest still holds the pre-first-attempt versions: rollback returns prod to v1 exactly.
    code, summary, err = _cli(server, "rollback", "--config", cfg, "--manifest", f"s3://prod-fault/{manifest_key}")
    assert code == 0, err
    assert summary["restored"] == OBJECTS
    assert listing(s3, "prod-fault", "d/") == before_first_attempt

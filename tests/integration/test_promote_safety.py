"""Promotion under concurrency and partial failure, against the real S3 server: a second writer is
refused (or waits), a prefix that failed part-way is in the run index so its rollback is exact, a
QA object changed after the plan is never promoted, and a copy whose multipart ETag cannot be
reproduced never lets a delete run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import body, listing, put, versions, write_config

from greenlight.errors import QAChangedError, SyncFailedError
from greenlight.promotion import run
from greenlight.promotion.config import parse_config
from greenlight.promotion.copier import ObjectCopier
from greenlight.promotion.engine import Engine
from greenlight.promotion.rollback import rollback
from greenlight.storage.lease import Lease
from greenlight.storage.manifests import read_manifest_uri

ROOT = Path(__file__).resolve().parents[2]


def raw_config(buckets, area, names=("a/", "b/")):
    qa, prod = buckets
    return {
        "prefixes": [f"s3://{qa}/{area}{n}" for n in names],
        "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        "defaults": {"stale_after_hours": None, "max_delete_fraction": 1.0},
    }


def cli(s3env, *args):
    env = {**os.environ, **s3env.env(), "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", *args], capture_output=True, text=True, env=env, timeout=300
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_cli_promote_refuses_while_another_run_writes_the_prefix_then_waits(s3env, s3, buckets, area, tmp_path):
    qa, prod = buckets
    path = str(write_config(tmp_path / "promotion.yaml", raw_config(buckets, area)))
    put(s3, qa, f"{area}a/x.csv", "x")
    put(s3, qa, f"{area}b/y.csv", "y")
    cfg = parse_config(raw_config(buckets, area))
    holder = Lease(
        s3, cfg.manifest_uri, f"s3://{prod}/{area}b/", run_id="scheduled__nightly", operation="promote"
    ).acquire()
    try:
        code, summary, _ = cli(s3env, "promote", "--config", path)
        assert code == 2 and summary["kind"] == "refused"
        assert "'scheduled__nightly'" in summary["error"] and f"s3://{prod}/{area}b/" in summary["error"]
        assert "holds the lease until" in summary["error"]
        assert listing(s3, prod, area) == {}  # not even the free prefix: all or nothing
        threading.Timer(2.0, holder.release).start()
        code, summary, stderr = cli(s3env, "promote", "--config", path, "--wait", "60")
    finally:
        holder.release()
    assert code == 0, stderr
    assert summary["copied"] == 2
    assert {row["resource"] for row in summary["leases"]} == {f"s3://{prod}/{area}a/", f"s3://{prod}/{area}b/"}


def test_failed_prefix_is_in_the_run_index_and_rolls_back_exactly(s3, buckets, area):
    """The DAG's promote step (run.promote_prefix) on a prefix whose QA changes mid-run: it fails,
    the run index still names its partial manifest, and rolling back the index is exact."""
    qa, prod = buckets
    cfg = parse_config(raw_config(buckets, area))
    for n in ("a/", "b/"):
        put(s3, qa, f"{area}{n}1.csv", "v1")
        put(s3, qa, f"{area}{n}2.csv", "v1")
    run.promote(cfg, s3, run_id="night-1")
    before = listing(s3, prod, area)
    for n in ("a/", "b/"):
        put(s3, qa, f"{area}{n}1.csv", "v2")
        put(s3, qa, f"{area}{n}2.csv", "v2")
    engine = Engine(cfg, s3)
    plans = run.plan(engine, run_id="night-2", dry_run=False)
    row_a = run.promote_prefix(engine, plans[0], "night-2", dry_run=False)
    put(s3, qa, f"{area}b/2.csv", "v3: written after the gate")
    with pytest.raises(QAChangedError, match=f"{area}b/2.csv"):
        run.promote_prefix(engine, plans[1], "night-2", dry_run=False)
    index = engine.manifests.uri("promotions/night-2/index.json")  # no summary step ran
    assert row_a["manifest"]

    doc = read_manifest_uri(index, s3)
    rows = {r["prefix"]: r for r in doc["prefixes"]}
    assert rows[f"s3://{qa}/{area}b/"]["status"] == "failed" and rows[f"s3://{qa}/{area}b/"]["manifest"]
    assert doc["status"] == "failed"
    assert body(s3, prod, f"{area}b/1.csv") == b"v2"  # the copy that succeeded before the failure

    rollback(index, s3, config=cfg)
    assert listing(s3, prod, area) == before


def test_multipart_etag_that_cannot_be_reproduced_is_not_counted_and_blocks_deletes(s3, buckets, area, monkeypatch):
    """SeaweedFS reproduces multipart ETags (through CopyObject), so a server that cannot is
    simulated: the real copies run, and their reported ETag is replaced by one that differs."""
    qa, prod = buckets
    cfg = parse_config(raw_config(buckets, area, names=("m/",)))
    put(s3, prod, f"{area}m/extra.csv", "prod only: the plan deletes it")
    upload = s3.create_multipart_upload(Bucket=qa, Key=f"{area}m/big.bin")
    parts = []
    for number in (1, 2):
        part = s3.upload_part(
            Bucket=qa, Key=f"{area}m/big.bin", UploadId=upload["UploadId"], PartNumber=number, Body=os.urandom(5 << 20)
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket=qa, Key=f"{area}m/big.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    for name in ("copy_single", "copy_parts"):
        real = getattr(ObjectCopier, name)

        def other_etag(self, *args, _real=real):
            _etag, version, source_version = _real(self, *args)
            return "0123456789abcdef0123456789abcdef", version, source_version

        monkeypatch.setattr(ObjectCopier, name, other_etag)
    engine = Engine(cfg, s3)
    (plan,) = run.plan(engine)
    state = versions(s3, prod, f"{area}m/extra.csv")

    with pytest.raises(SyncFailedError, match="not counted as copied") as caught:
        engine.execute(plan, "night-1")

    assert caught.value.result.copied == 0
    assert versions(s3, prod, f"{area}m/extra.csv") == state  # no delete ran after it
    manifest = read_manifest_uri(caught.value.result.manifest, s3)
    (entry,) = [a for a in manifest["actions"] if a["key"].endswith("big.bin")]
    assert entry["after"]["version_id"]  # prod did change: recorded, so a rollback is exact

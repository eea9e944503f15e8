"""Exact rollback from a promotion manifest, against the real S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rollbackfixtures
from helpers import body, listing, versions
from rollbackfixtures import config

from greenlight.errors import RefusedError
from greenlight.promotion.gates import read_pointer
from greenlight.promotion.rollback import rollback
from greenlight.storage.manifests import ManifestStore

ROOT = Path(__file__).resolve().parents[2]
promoted = rollbackfixtures.promoted  # fixtures shared with tests/dags/test_rollback_dag.py
config_file = rollbackfixtures.config_file


def test_rollback_restores_prod_exactly(s3, buckets, area, promoted):
    _, prod = buckets
    before, manifest = promoted
    b_version = s3.head_object(Bucket=prod, Key=area + "b.csv")["VersionId"]

    summary = rollback(manifest, s3, config=config(buckets, area))

    assert listing(s3, prod, area) == before
    assert body(s3, prod, area + "a.csv") == b"a-v1"
    assert body(s3, prod, area + "old.csv") == b"old"
    assert (summary["restored"], summary["deleted"], summary["unchanged"]) == (2, 1, 0)
    # b.csv was not touched by the promotion: not even a new version.
    assert s3.head_object(Bucket=prod, Key=area + "b.csv")["VersionId"] == b_version
    # The prefix's current pointer is back on the promotion prod now matches again.
    cfg = config(buckets, area)
    pointer = read_pointer(ManifestStore(cfg.manifest_uri, s3), cfg.prefixes[0])
    assert (pointer["run_id"], pointer["restored_from"]) == ("night-1", "night-2")
    assert summary["pointers_restored"] == [f"s3://{prod}/{area}"]


def test_rollback_dry_run_changes_nothing(s3, buckets, area, promoted):
    _, prod = buckets
    _, manifest = promoted
    state = versions(s3, prod, area)

    summary = rollback(manifest, s3, config=config(buckets, area), dry_run=True)

    assert versions(s3, prod, area) == state
    assert sorted(line.split(":")[0] for line in summary["plan_lines"]) == ["delete", "restore", "restore"]


def test_missing_version_is_refused_and_nothing_changes(s3, buckets, area, promoted):
    _, prod = buckets
    _, manifest = promoted
    old_a = [v for v in versions(s3, prod, area + "a.csv") if not v[2] and not v[3]][0][1]
    s3.delete_object(Bucket=prod, Key=area + "a.csv", VersionId=old_a)  # e.g. expired by lifecycle
    state = versions(s3, prod, area)

    with pytest.raises(RefusedError) as err:
        rollback(manifest, s3, config=config(buckets, area))

    assert f"{area}a.csv" in str(err.value) and old_a in str(err.value)
    assert versions(s3, prod, area) == state
    partial = rollback(manifest, s3, config=config(buckets, area), allow_partial=True)
    assert partial["restored"] == 1 and partial["deleted"] == 1 and len(partial["unrecoverable"]) == 1


def test_rollback_can_be_rolled_back(s3, buckets, area, promoted):
    _, prod = buckets
    _, manifest = promoted
    after_promotion = listing(s3, prod, area)

    first = rollback(manifest, s3, config=config(buckets, area), run_id="undo-night-2")
    rollback(first["rollback_manifests"][0], s3, config=config(buckets, area), run_id="redo-night-2")

    assert listing(s3, prod, area) == after_promotion


def test_rollback_cli(s3env, s3, buckets, area, promoted, config_file):
    _, prod = buckets
    before, manifest = promoted
    env = {**os.environ, **s3env.env(), "PYTHONPATH": str(ROOT / "include")}
    run = subprocess.run(
        [sys.executable, "-m", "greenlight", "rollback", "--manifest", manifest, "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["dry_run"] is True
    assert listing(s3, prod, area) != before

    run = subprocess.run(
        [sys.executable, "-m", "greenlight", "rollback", "--manifest", manifest],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert listing(s3, prod, area) == before

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenlight",
            "rollback",
            "--manifest",
            f"s3://{prod}/_greenlight/{area}nope/index.json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stdout

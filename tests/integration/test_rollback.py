"""Exact rollback from a promotion manifest, against the real S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import body, listing, put, versions, write_config

from greenlight.errors import RefusedError
from greenlight.promotion.config import parse_config
from greenlight.promotion.gates import read_pointer
from greenlight.promotion.rollback import rollback
from greenlight.promotion.run import promote
from greenlight.storage.manifests import ManifestStore

ROOT = Path(__file__).resolve().parents[2]


def config(buckets, area):
    qa, prod = buckets
    return parse_config(
        {
            "prefixes": [{"source": f"s3://{qa}/{area}", "max_delete_fraction": 1.0}],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )


@pytest.fixture
def promoted(s3, buckets, area):
    """Prod holds a, b, old; QA has a changed, b unchanged, new added, old removed; then promoted."""
    qa, prod = buckets
    for key, text in {"a.csv": "a-v1", "b.csv": "b-v1", "old.csv": "old"}.items():
        put(s3, qa, area + key, text)
    promote(config(buckets, area), s3, run_id="night-1")
    before = listing(s3, prod, area)
    put(s3, qa, area + "a.csv", "a-v2-longer")
    put(s3, qa, area + "new.csv", "new")
    s3.delete_object(Bucket=qa, Key=area + "old.csv")
    summary = promote(config(buckets, area), s3, run_id="night-2")
    assert (summary["copied"], summary["deleted"]) == (2, 1)
    return before, summary["manifest"]


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


@pytest.fixture
def config_file(tmp_path, monkeypatch, buckets, area):
    """The same config as :func:`config` as a file, also what the DAGs read."""
    qa, prod = buckets
    path = write_config(
        tmp_path / "promotion.yaml",
        {
            "prefixes": [{"source": f"s3://{qa}/{area}", "max_delete_fraction": 1.0}],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        },
    )
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(path))
    return str(path)


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


@pytest.mark.usefixtures("airflow_db", "config_file")
def test_rollback_dag(s3, buckets, area, promoted):
    from dagrun import run_dag

    _, prod = buckets
    before, manifest = promoted

    state, tis, _, _ = run_dag("artefact_rollback", {"manifest": manifest, "dry_run": True})
    assert state == "success", tis
    assert listing(s3, prod, area) != before

    state, tis, _, _ = run_dag("artefact_rollback", {"manifest": manifest})
    assert state == "success", tis
    assert listing(s3, prod, area) == before

    state, tis, _, _ = run_dag("artefact_rollback", {"manifest": f"s3://{prod}/_greenlight/{area}none/index.json"})
    assert state == "failed" and tis["plan"] == ("failed", 1)  # bad input: no retry

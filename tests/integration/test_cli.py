"""``python -m greenlight promote``: the runbook's manual fallback, as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import put, rel_listing, versions, write_config

ROOT = Path(__file__).resolve().parents[2]


def cli(s3env, *args: str) -> tuple[int, dict, str, str]:
    env = {**os.environ, **s3env.env(), "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", *args], capture_output=True, text=True, env=env, timeout=300
    )
    last = proc.stdout.strip().splitlines()[-1]
    return proc.returncode, json.loads(last), proc.stdout, proc.stderr


def config(tmp_path, buckets, area, **settings) -> str:
    qa, prod = buckets
    doc = {
        "prefixes": [{"source": f"s3://{qa}/{area}", **settings}],
        "manifest_uri": f"s3://{prod}/_greenlight/{area}",
    }
    return str(write_config(tmp_path / "promotion.yaml", doc))


def test_promote_exit_0_with_json_summary_and_per_object_log(s3env, s3, buckets, area, tmp_path):
    qa, prod = buckets
    put(s3, qa, f"{area}a.csv", "a")
    put(s3, qa, f"{area}b.csv", "bb")

    code, summary, _, stderr = cli(s3env, "promote", "--config", config(tmp_path, buckets, area))

    assert code == 0, stderr
    assert {k: summary[k] for k in ("copied", "deleted", "unchanged", "objects_seen", "bytes_copied")} == {
        "copied": 2,
        "deleted": 0,
        "unchanged": 0,
        "objects_seen": 2,
        "bytes_copied": 3,
    }
    assert summary["manifest"].startswith(f"s3://{prod}/_greenlight/{area}")
    assert f"copy: s3://{qa}/{area}a.csv -> s3://{prod}/{area}a.csv" in stderr  # not --quiet
    assert rel_listing(s3, prod, area) == rel_listing(s3, qa, area)


def test_dry_run_prints_plan_and_changes_nothing(s3env, s3, buckets, area, tmp_path):
    qa, prod = buckets
    put(s3, qa, f"{area}new.csv", "n")
    before = versions(s3, prod, area)

    code, summary, stdout, _ = cli(s3env, "promote", "--config", config(tmp_path, buckets, area), "--dry-run")

    assert code == 0
    assert summary["dry_run"] is True and summary["copied"] == 0
    assert f"copy: s3://{qa}/{area}new.csv -> s3://{prod}/{area}new.csv (1 B)" in stdout
    assert versions(s3, prod, area) == before


def test_refusal_exits_2_naming_the_prefix(s3env, s3, buckets, area, tmp_path):
    qa, prod = buckets
    put(s3, prod, f"{area}keep", "k")
    before = versions(s3, prod, area)

    code, summary, _, _ = cli(s3env, "promote", "--config", config(tmp_path, buckets, area))

    assert code == 2
    assert summary["kind"] == "refused"
    assert f"s3://{qa}/{area}" in summary["error"]
    assert versions(s3, prod, area) == before


def test_bad_config_exits_2(s3env, tmp_path):
    path = write_config(tmp_path / "bad.yaml", {"prefixes": ["s3://qa-x/a/"], "max_deletes": 3})
    code, summary, _, _ = cli(s3env, "promote", "--config", str(path))
    assert code == 2
    assert "unknown key 'max_deletes'" in summary["error"]


def test_unknown_only_exits_2(s3env, buckets, area, tmp_path):
    code, summary, _, _ = cli(
        s3env, "promote", "--config", config(tmp_path, buckets, area), "--only", "s3://qa-elsewhere/x/"
    )
    assert code == 2 and "not a configured prefix" in summary["error"]


def test_stale_prefix_exits_1(s3env, s3, buckets, area, tmp_path):
    qa, _ = buckets
    put(s3, qa, f"{area}a", "a")
    path = config(tmp_path, buckets, area, stale_after_hours=0.0003)  # about one second
    assert cli(s3env, "promote", "--config", path)[0] == 0
    time.sleep(2)

    code, summary, _, _ = cli(s3env, "promote", "--config", path)

    assert code == 1
    assert any("stale prefix" in e and f"s3://{qa}/{area}" in e for e in summary["errors"])


def test_no_secret_in_output(s3env, s3, buckets, area, tmp_path):
    qa, _ = buckets
    put(s3, qa, f"{area}a", "a")
    _, _, stdout, stderr = cli(s3env, "-v", "promote", "--config", config(tmp_path, buckets, area))
    assert s3env.secret_key not in stdout + stderr

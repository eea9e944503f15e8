"""``greenlight check-run`` on real ``dag.test()`` runs of ``artefact_promotion`` (task manifests
written by the listener, pointers on the real S3 server): a complete run, the same run with a
mapped task's manifest gone, and with its pointer put back by a rollback; then a DAG whose final
``check_run`` task checks its own run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dagrun import ROOT, run_dag
from helpers import put

from greenlight.cli import main
from greenlight.storage.manifests import safe_name

pytestmark = pytest.mark.usefixtures("airflow_db")


def cli_subprocess(*args: str) -> tuple[int, dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", *args], capture_output=True, text=True, env=env, timeout=300
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def cli_inprocess(capsys, *args: str) -> tuple[int, dict, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


@pytest.fixture(scope="module")
def promoted_run(s3, buckets):
    """One verified promotion of two prefixes with task manifests in a local root.

    (Its own temp dir: pytest's numbered tmp dirs are pruned by concurrent pytest sessions.)"""
    from helpers import write_config

    qa, prod = buckets
    tmp = Path(tempfile.mkdtemp(prefix="greenlight-checkrun-"))
    area = f"checkrun-{os.getpid()}/"
    zarr, csv = f"{area}zarr/", f"{area}csv/"
    config = write_config(
        tmp / "promotion.yaml",
        {"prefixes": [f"s3://{qa}/{zarr}", f"s3://{qa}/{csv}"], "manifest_uri": f"s3://{prod}/_greenlight/{area}"},
    )
    put(s3, qa, f"{zarr}.zgroup", '{"zarr_format": 2}')
    put(s3, qa, f"{csv}delivery.csv", "as_of_date,value\n2026-11-21,1\n")
    root = tmp / "task_manifests"
    saved = {k: os.environ.get(k) for k in ("GREENLIGHT_PROMOTION_CONFIG", "GREENLIGHT_TASK_MANIFEST_ROOT")}
    os.environ.update({"GREENLIGHT_PROMOTION_CONFIG": str(config), "GREENLIGHT_TASK_MANIFEST_ROOT": str(root)})
    try:
        state, tis, _, run_id = run_dag("artefact_promotion", {"dry_run": False})
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert state == "success", tis
    yield {"root": root, "run_id": run_id, "config": config, "tmp": tmp}
    shutil.rmtree(tmp, ignore_errors=True)


def copy_of(promoted_run, name: str):
    """A private copy of the run's manifests to damage."""
    root = promoted_run["tmp"] / name
    shutil.copytree(promoted_run["root"], root)
    return root, root / "artefact_promotion" / safe_name(promoted_run["run_id"])


def test_a_complete_run_passes_with_a_table_and_json(promoted_run, s3env):
    run_id = promoted_run["run_id"]
    code, report, table = cli_subprocess(
        "check-run", "--dag-id", "artefact_promotion", "--run-id", run_id, "--root", str(promoted_run["root"])
    )
    assert code == 0, table
    assert report["complete"] is True and report["missing"] == []
    tasks = {r["task"]: (r["state"], r["category"]) for r in report["tasks"]}
    assert tasks == {
        "preflight": ("success", "A"),
        "plan": ("success", "A"),
        "gate.0": ("success", "A"),
        "gate.1": ("success", "A"),
        "decide": ("success", "A"),
        "shards": ("success", "A"),
        "promote.0": ("success", "A"),
        "promote.1": ("success", "A"),
        "verify": ("success", "B"),
        "summary": ("success", "A"),
        "resume_consumers": ("success", "A"),
        "check_run": ("success", "A"),  # the DAG's own final check passed
    }
    assert report["skipped_by_branch"] == ["halt_prod_consumers"]  # the branch chose promote
    assert len(report["pointers"]) == 2 and all(p["ok"] and p["names_run"] == run_id for p in report["pointers"])
    assert f"run {run_id} of artefact_promotion: COMPLETE" in table
    assert "halt_prod_consumers  (branch)" in table


def test_the_newest_run_of_a_day_is_found_by_date(promoted_run, capsys):
    day = promoted_run["run_id"].split("__", 1)[1][:10]
    code, report, _ = cli_inprocess(
        capsys, "check-run", "--dag-id", "artefact_promotion", "--date", day, "--root", str(promoted_run["root"])
    )
    assert (code, report["run_id"]) == (0, promoted_run["run_id"])
    code, report, _ = cli_inprocess(
        capsys,
        "check-run",
        "--dag-id",
        "artefact_promotion",
        "--date",
        "1999-01-01",
        "--root",
        str(promoted_run["root"]),
    )
    assert code == 1 and report["missing"] == ["no run of artefact_promotion has task manifests"]


def test_a_missing_mapped_task_is_listed_and_exits_1(promoted_run, capsys):
    root, folder = copy_of(promoted_run, "missing_mapped")
    (folder / "promote.1.json").unlink()
    doc = json.loads((folder / "gate.0.json").read_text())
    (folder / "gate.0.json").write_text(json.dumps({**doc, "run_id": "manual__someone-elses-run"}))

    code, report, table = cli_inprocess(
        capsys, "check-run", "--dag-id", "artefact_promotion", "--run-id", promoted_run["run_id"], "--root", str(root)
    )

    assert code == 1 and report["complete"] is False
    assert report["missing"][0].startswith("promote.1 has no task manifest (retry category A: clear in place")
    assert "gate.0: manifest names run 'manual__someone-elses-run'" in report["missing"][1]
    assert "promote.1     no manifest" in table or "promote.1" in table and "MISSING" in table


def test_a_pointer_that_did_not_move_is_listed(promoted_run, capsys, s3):
    from greenlight.promotion.config import load_config
    from greenlight.promotion.gates import read_pointer, restore_pointer
    from greenlight.storage.manifests import ManifestStore

    config = load_config(promoted_run["config"])
    store = ManifestStore(config.manifest_uri, s3)
    prefix = config.prefixes[1]
    before = read_pointer(store, prefix)
    assert restore_pointer(store, prefix, promoted_run["run_id"])  # what a rollback of the run does
    try:
        code, report, _ = cli_inprocess(
            capsys,
            "check-run",
            "--dag-id",
            "artefact_promotion",
            "--run-id",
            promoted_run["run_id"],
            "--root",
            str(promoted_run["root"]),
        )
    finally:
        store.write(f"current/{safe_name(str(prefix.destination).removeprefix('s3://'))}.json", before)
    assert code == 1
    (problem,) = report["missing"]
    assert (
        problem.startswith("verify: current pointer s3://")
        and f"did not move to run {promoted_run['run_id']}" in problem
    )
    assert sorted(p["ok"] for p in report["pointers"]) == [False, True]


def test_bad_input_exits_2(promoted_run, capsys):
    code, report, _ = cli_inprocess(capsys, "check-run", "--dag-id", "no_such_dag", "--root", str(promoted_run["root"]))
    assert code == 2 and "--dag-id 'no_such_dag'" in report["error"] and "artefact_promotion" in report["error"]
    code, report, _ = cli_inprocess(capsys, "check-run", "--dag-id", "artefact_promotion", "--date", "yesterday")
    assert code == 2 and "--date 'yesterday'" in report["error"]


def test_the_final_check_run_task_checks_its_own_run(tmp_path, monkeypatch):
    from test_task_manifests import local_manifests, run_test_dag

    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(tmp_path / "tm"))
    state, tis, run_id = run_test_dag("run_check_probe", {"fail_one": False})
    assert state == "success", tis
    assert tis["check_run"] == ("success", 1) and tis["work.2"] == ("success", 1)
    docs = local_manifests(tmp_path / "tm", "run_check_probe", run_id)
    assert docs["check_run"]["outputs"] == {"complete": True, "tasks": 5, "pointers": 0}

    state, tis, run_id = run_test_dag("run_check_probe", {"fail_one": True})
    assert state == "failed" and tis["check_run"][0] == "failed"  # all_done: it ran and found the gap
    error = local_manifests(tmp_path / "tm", "run_check_probe", run_id)["check_run"]["error"]
    assert "work.1 is failed" in error["message"] and error["retryable"] is False

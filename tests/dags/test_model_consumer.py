"""The model promotion's follow-up check on a real MLflow registry (SQLite backend, artifacts on the
test S3 server) and real ``dag.test()`` runs of the consumer ``commodity_hindcast_prod``: the
consumer's task manifest records the model version it loaded, and ``greenlight model
check-consumer`` says whether the first consumer run after the head moved used it (exit 0), has
not happened yet or used another version (exit 1)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from dagrun import run_dag
from modelfixtures import alias_version, build_registry, cleanup

from greenlight.cli import main
from greenlight.storage.manifests import safe_name

pytestmark = pytest.mark.usefixtures("airflow_db")

CONSUMER = "commodity_hindcast_prod"


@pytest.fixture
def registry(s3env, s3, buckets, monkeypatch):
    reg = build_registry(s3env, s3, buckets)
    config = yaml.safe_load(reg["config"].read_text())
    config["models"][reg["name"]]["consumers"] = [CONSUMER]  # the project's own consumer DAG
    reg["config"].write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", reg["uri"])
    monkeypatch.setenv("GREENLIGHT_MODELS_CONFIG", str(reg["config"]))
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(reg["root"]))
    yield reg
    cleanup(reg)


def model_cli(capsys, *args: str) -> tuple[int, dict]:
    code = main(["model", *args])
    out, _ = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1])


def promote(capsys, reg, candidate: str, run_id: str) -> None:
    code, out = model_cli(
        capsys,
        "promote",
        "--name",
        reg["name"],
        "--candidate",
        candidate,
        "--smoke-partition",
        reg["partition"],
        "--run-id",
        run_id,
    )
    assert code == 0, out


def consumer_run(reg) -> tuple[str, dict]:
    """One real run of the consumer DAG; returns its run id and what its task manifest recorded."""
    state, tis, _, run_id = run_dag(CONSUMER)
    assert state == "success", tis  # its final check_run passed too
    doc = json.loads((reg["root"] / CONSUMER / safe_name(run_id) / "run_hindcast.json").read_text())
    return run_id, doc["outputs"]


def test_check_consumer_follows_promotions_and_rollbacks(registry, capsys):
    name = registry["name"]
    check = ("check-consumer", "--name", name, "--manifest-root", str(registry["root"]))

    code, report = model_cli(capsys, *check)
    assert (code, report["status"]) == (2, "no_head")  # never promoted: nothing to check

    promote(capsys, registry, "1", "p1")
    code, report = model_cli(capsys, *check)
    assert (code, report["status"]) == (1, "pending")
    assert f"no run of {CONSUMER} has started since the head moved to version 1" in report["message"]

    first, outputs = consumer_run(registry)
    (used,) = outputs["models"]
    assert (used["model"], used["model_version"], used["model_alias"]) == (name, "1", "champion")
    assert used["model_uri"] == f"models:/{name}/1" and used["head_run_id"] == "p1"
    code, report = model_cli(capsys, *check)
    assert (code, report["status"], report["first_run"]["run_id"]) == (0, "ok", first), report

    promote(capsys, registry, "2", "p2")
    assert alias_version(registry) == "2"
    code, report = model_cli(capsys, *check)
    assert (code, report["status"]) == (1, "pending")  # the v1 run started before the promotion
    second, outputs = consumer_run(registry)
    assert outputs["models"][0]["model_version"] == "2"
    code, report = model_cli(capsys, *check)
    assert (code, report["status"], report["first_run"]["run_id"]) == (0, "ok", second)

    # Rollback to 1: the consumer run that used 2 is named, and the next run must use 1 again.
    code, back = model_cli(
        capsys, "rollback", "--name", name, "--run-id", "rb1", "--manifest-root", str(registry["root"])
    )
    assert code == 0 and back["restored_version"] == "1"
    assert back["runs_using_rolled_back_version"] == [{"dag_id": CONSUMER, "run_id": second, "task": "run_hindcast"}]
    # A consumer that does not follow the head: its run after the rollback still loaded version 2.
    # (Its manifests are the v2 run's, copied under a later run id and start time: greenlight's own
    # consumer always reads the pointer, so this one is written by hand.)
    stale = f"scheduled__{datetime.now(UTC).isoformat()}"
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    folder = registry["root"] / CONSUMER / safe_name(stale)
    shutil.copytree(registry["root"] / CONSUMER / safe_name(second), folder)
    for path in folder.glob("*.json"):
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({**doc, "run_id": stale, "start": later}))
    code, report = model_cli(capsys, *check)
    assert (code, report["status"], report["first_run"]["run_id"]) == (1, "old_version", stale), report
    assert f"used {name} version 2, not the head 1 (rollback by rb1)" in report["message"]


def test_check_consumer_bad_input(s3env, capsys, monkeypatch):
    monkeypatch.delenv("GREENLIGHT_MODELS_CONFIG", raising=False)  # the project's models.yaml
    code, report = model_cli(capsys, "check-consumer", "--name", "no-such-model")
    assert code == 2 and "model 'no-such-model' is not configured" in report["error"]
    code, report = model_cli(capsys, "check-consumer", "--name", "yield-forecaster", "--wait", "-1")
    assert code == 2 and "--wait -1.0" in report["error"]

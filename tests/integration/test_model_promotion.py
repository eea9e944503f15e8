"""``greenlight model promote|rollback`` on a real MLflow registry (SQLite backend, artifacts on the
test S3 server): a good candidate moves the alias and the pointer together; a candidate with a
missing artifact, the wrong output shape, a RUNNING run or no such version is refused (exit 2)
with nothing moved; rollback restores both and lists the consumer runs that used the version."""

from __future__ import annotations

import json
import os

import pytest
from helpers import versions
from modelfixtures import alias_version, build_registry, cleanup

from greenlight.cli import main


@pytest.fixture(scope="module")
def registry(s3env, s3, buckets):
    reg = build_registry(s3env, s3, buckets)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "GREENLIGHT_MODELS_CONFIG")}
    os.environ.update({"MLFLOW_TRACKING_URI": reg["uri"], "GREENLIGHT_MODELS_CONFIG": str(reg["config"])})
    yield reg
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    cleanup(reg)


def model_cli(capsys, *args: str) -> tuple[int, dict]:
    code = main(["model", *args])
    out, _ = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1])


def pointer_state(s3, registry) -> list:
    return versions(s3, registry["prod"], registry["pointer_key"])


def pointer(s3, registry) -> dict:
    return json.loads(s3.get_object(Bucket=registry["prod"], Key=registry["pointer_key"])["Body"].read())


def consumer_manifest(registry, run_id: str, version: str) -> None:
    """What a consumer's task manifest records when it loads a model (the convention)."""
    folder = registry["root"] / "forecast_consumer" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"run_id": run_id, "state": "success", "outputs": {"model": registry["name"], "model_version": version}}
    (folder / "score.json").write_text(json.dumps(doc))


def test_promote_refuse_republish_and_rollback(registry, s3, capsys):
    name, part = registry["name"], registry["partition"]

    code, first = model_cli(
        capsys, "promote", "--name", name, "--candidate", "1", "--smoke-partition", part, "--run-id", "p1"
    )
    assert code == 0, first
    assert (first["version"], first["previous_version"], alias_version(registry)) == ("1", None, "1")

    # the second head, named by its MLflow run id
    code, second = model_cli(
        capsys,
        "promote",
        "--name",
        name,
        "--candidate",
        registry["runs"][2],
        "--smoke-partition",
        part,
        "--run-id",
        "p2",
    )
    assert code == 0, second
    assert (second["version"], second["previous_version"], alias_version(registry)) == ("2", "1", "2")
    head = pointer(s3, registry)
    assert (head["version"], head["run_id"], head["previous"]["version"]) == ("2", "p2", "1")
    assert head["smoke"]["rows"] == 3 and head["smoke"]["columns"] == {"prediction": "float64"}
    written = pointer_state(s3, registry)

    refusals = {
        "3": "python_model.pkl",  # MLmodel names a file the artifact store lost
        "4": "output columns ['prediction', 'debug'], contract ['prediction']",
        "5": f"its MLflow run {registry['runs'][5]} is RUNNING, not FINISHED",
        "99": "not found in the registry",
    }
    for candidate, reason in refusals.items():
        code, refused = model_cli(
            capsys, "promote", "--name", name, "--candidate", candidate, "--smoke-partition", part, "--run-id", "p3"
        )
        assert code == 2, (candidate, refused)
        assert f"candidate {candidate!r} of model {name}" in refused["error"] or f"models:/{name}/4" in refused["error"]
        assert reason in refused["error"], refused["error"]
        assert alias_version(registry) == "2" and pointer_state(s3, registry) == written  # nothing moved

    # the same run id again: identical is a no-op, anything else is refused
    code, again = model_cli(
        capsys, "promote", "--name", name, "--candidate", "2", "--smoke-partition", part, "--run-id", "p2"
    )
    assert code == 0 and pointer_state(s3, registry) == written
    code, refused = model_cli(
        capsys, "promote", "--name", name, "--candidate", "1", "--smoke-partition", part, "--run-id", "p2"
    )
    assert (
        code == 2
        and "already published by run p2" in refused["error"]
        and "version: published '2', now '1'" in refused["error"]
    )
    assert alias_version(registry) == "2"

    consumer_manifest(registry, "scheduled__2026-12-02", "2")
    consumer_manifest(registry, "scheduled__2026-12-01", "1")
    code, back = model_cli(
        capsys, "rollback", "--name", name, "--run-id", "rb1", "--manifest-root", str(registry["root"])
    )
    assert code == 0, back
    assert (back["rolled_back_version"], back["restored_version"], alias_version(registry)) == ("2", "1", "1")
    assert back["runs_using_rolled_back_version"] == [
        {"dag_id": "forecast_consumer", "run_id": "scheduled__2026-12-02", "task": "score"}
    ]
    restored = pointer(s3, registry)
    assert (restored["version"], restored["run_id"], restored["restored_from"]["version"]) == ("1", "p1", "2")

    code, refused = model_cli(capsys, "rollback", "--name", name)  # nothing before version 1
    assert code == 2 and "nothing to roll back to" in refused["error"] and alias_version(registry) == "1"


def test_bad_input_names_the_problem(registry, capsys):
    code, out = model_cli(capsys, "promote", "--name", "not-configured", "--candidate", "1", "--smoke-partition", "x")
    assert code == 2 and "model 'not-configured' is not configured" in out["error"]
    code, out = model_cli(capsys, "promote", "--name", registry["name"], "--candidate", "1")
    assert code == 2 and "--smoke-partition is required" in out["error"]
    empty = registry["partition"].replace("date=2026-12-01", "date=1999-01-01")
    code, out = model_cli(capsys, "promote", "--name", registry["name"], "--candidate", "1", "--smoke-partition", empty)
    assert code == 2 and out["kind"] == "missing_input" and empty in out["error"]

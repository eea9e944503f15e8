"""``model_promotion`` under ``dag.test()`` on a real MLflow registry (SQLite, artifacts on the test
S3 server): a refused candidate moves nothing and fails without retry; a good one moves the alias
and the pointer and emits the pointer's Asset event."""

from __future__ import annotations

import json

import pytest
from dagrun import asset_events, run_dag
from modelfixtures import alias_version, build_registry, cleanup

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def registry(s3env, s3, buckets, monkeypatch):
    reg = build_registry(s3env, s3, buckets)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", reg["uri"])
    monkeypatch.setenv("GREENLIGHT_MODELS_CONFIG", str(reg["config"]))
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    yield reg
    cleanup(reg)


def test_refused_then_promoted_with_an_asset_event(registry, s3):
    conf = {"model_name": registry["name"], "smoke_partition": registry["partition"]}

    state, tis, _, _ = run_dag("model_promotion", {**conf, "candidate": "4"})  # wrong output shape
    assert state == "failed"
    assert tis["smoke_score"] == ("failed", 1)  # contract: no retry although retries=2
    assert tis["promote_model"][0] == "upstream_failed" and tis["rollback_model"][0] == "skipped"
    assert alias_version(registry) is None

    state, tis, xcoms, run_id = run_dag("model_promotion", {**conf, "candidate": "1"})
    assert state == "success", tis
    assert alias_version(registry) == "1"
    head = json.loads(s3.get_object(Bucket=registry["prod"], Key=registry["pointer_key"])["Body"].read())
    assert (head["version"], head["run_id"]) == ("1", run_id)
    pointer_uri = f"s3://{registry['prod']}/{registry['pointer_key']}"
    (event,) = asset_events([pointer_uri], run_id)[pointer_uri]
    assert (event["model"], event["version"], event["alias"]) == (registry["name"], "1", "champion")

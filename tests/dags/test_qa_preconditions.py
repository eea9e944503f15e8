"""QA preconditions: a RUNNING MLflow run or a missing/old sign-off marker blocks promotion.

Uses a real MLflow tracking store (SQLite) and the real S3 server.
"""

from __future__ import annotations

import time

import pytest
from helpers import listing, put, versions

from greenlight.errors import ConfigError, PreconditionError
from greenlight.promotion.config import parse_config
from greenlight.promotion.run import promote


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def experiment(mlflow_uri, request):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    name = f"qa_{request.node.name[:30]}_{time.time_ns()}"
    client.create_experiment(name)
    return client, name


def config(buckets, area, **settings):
    qa, prod = buckets
    return parse_config(
        {
            "prefixes": [{"source": f"s3://{qa}/{area}", **settings}],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
            "defaults": {"stale_after_hours": None},
        }
    )


def test_running_qa_run_blocks_promotion(s3, buckets, area, mlflow_uri, experiment):
    qa, prod = buckets
    client, name = experiment
    exp_id = client.get_experiment_by_name(name).experiment_id
    finished = client.create_run(exp_id, run_name="hindcast-corn-done")
    client.set_terminated(finished.info.run_id, "FINISHED")
    running = client.create_run(exp_id, run_name="hindcast-wheat-live")
    put(s3, qa, f"{area}a.zarr/.zgroup", "{}")
    before = versions(s3, prod, area)

    with pytest.raises(PreconditionError) as err:
        promote(config(buckets, area, mlflow_experiments=[name]), s3, run_id="r", tracking_uri=mlflow_uri)

    message = str(err.value)
    assert running.info.run_id in message and "hindcast-wheat-live" in message
    assert finished.info.run_id not in message
    assert err.value.exit_code == 2
    assert versions(s3, prod, area) == before

    client.set_terminated(running.info.run_id, "FINISHED")
    summary = promote(config(buckets, area, mlflow_experiments=[name]), s3, run_id="r2", tracking_uri=mlflow_uri)
    assert summary["copied"] == 1


def test_unknown_experiment_and_missing_uri_are_config_errors(s3, buckets, area, mlflow_uri):
    qa, _ = buckets
    put(s3, qa, f"{area}a", "a")
    with pytest.raises(ConfigError, match="'no_such_experiment' does not exist"):
        promote(
            config(buckets, area, mlflow_experiments=["no_such_experiment"]), s3, run_id="r", tracking_uri=mlflow_uri
        )
    with pytest.raises(ConfigError, match="no MLflow tracking URI"):
        promote(config(buckets, area, mlflow_experiments=["x"]), s3, run_id="r", tracking_uri=None)


def test_signoff_marker_required_and_newer_than_data(s3, buckets, area):
    qa, prod = buckets
    put(s3, qa, f"{area}delivery.csv", "a,b\n")
    cfg = config(buckets, area, signoff_marker="_QA_SIGNED_OFF")

    with pytest.raises(PreconditionError, match="sign-off marker .*_QA_SIGNED_OFF is missing"):
        promote(cfg, s3, run_id="r1")
    assert listing(s3, prod, area) == {}

    put(s3, qa, f"{area}_QA_SIGNED_OFF", "signed by qa-lead")
    time.sleep(1.1)  # S3 listings have one-second timestamps
    put(s3, qa, f"{area}delivery.csv", "a,b\n1,2\n")  # QA changed after sign-off
    with pytest.raises(PreconditionError, match="older than delivery.csv"):
        promote(cfg, s3, run_id="r2")
    assert listing(s3, prod, area) == {}

    time.sleep(1.1)
    put(s3, qa, f"{area}_QA_SIGNED_OFF", "signed again")
    summary = promote(cfg, s3, run_id="r3")
    assert summary["copied"] == 1
    assert set(listing(s3, prod, area)) == {f"{area}delivery.csv"}  # the marker itself is not promoted


def test_running_qa_run_fails_the_dag_in_preflight(
    airflow_db, s3, buckets, area, mlflow_uri, experiment, tmp_path, monkeypatch
):
    """The same precondition in ``artefact_promotion`` (``dag.test()``): preflight fails without
    retry, nothing is gated or promoted, no Asset event."""
    from dagrun import asset_events, run_dag
    from helpers import write_config

    qa, prod = buckets
    client, name = experiment
    running = client.create_run(client.get_experiment_by_name(name).experiment_id, run_name="hindcast-live")
    put(s3, qa, f"{area}a.csv", "a\n1\n")
    cfg = write_config(
        tmp_path / "promotion.yaml",
        {
            "prefixes": [{"source": f"s3://{qa}/{area}", "mlflow_experiments": [name]}],
            "manifest_uri": f"s3://{prod}/_greenlight/{area}",
        },
    )
    monkeypatch.setenv("GREENLIGHT_PROMOTION_CONFIG", str(cfg))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    before = versions(s3, prod, area)

    state, tis, _, run_id = run_dag("artefact_promotion", {})

    assert state == "failed"
    assert tis["preflight"] == ("failed", 1), tis  # a precondition is not retried
    assert not any(k.startswith(("gate", "promote")) and v[0] == "success" for k, v in tis.items()), tis
    assert versions(s3, prod, area) == before
    assert asset_events([f"s3://{prod}/{area}"], run_id) == {f"s3://{prod}/{area}": []}

    client.set_terminated(running.info.run_id, "FINISHED")
    state, tis, _, _ = run_dag("artefact_promotion", {})
    assert state == "success", tis
    assert listing(s3, prod, area)

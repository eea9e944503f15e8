"""A real MLflow registry for model promotion tests: SQLite backend store, artifacts on the test S3
server (SeaweedFS), one registered model with versions that are good, broken and still running,
a smoke partition on S3 and a models.yaml naming the pointer location."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import yaml

MLFLOW_BUCKET = "mlflow-greenlight-test"


def _pyfunc_classes():
    import mlflow.pyfunc

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"prediction": model_input["x"].astype(float) * 2.0})

    class TwoColumns(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"prediction": model_input["x"] * 2.0, "debug": model_input["x"]})

    return Doubler, TwoColumns


def build_registry(s3env, s3, buckets) -> dict:
    """Versions: 1 and 2 good; 3 a copy of the good model without its pickled model; 4 returns two
    columns; 5 good but its run is RUNNING."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    try:
        s3.create_bucket(Bucket=MLFLOW_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="greenlight-models-"))
    tag = uuid.uuid4().hex[:8]
    os.environ["MLFLOW_S3_ENDPOINT_URL"] = s3env.endpoint_url
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = client.create_experiment(f"models-{tag}", artifact_location=f"s3://{MLFLOW_BUCKET}/models-{tag}")
    name = f"gl-forecaster-{tag}"
    doubler, two_columns = _pyfunc_classes()
    sample = pd.DataFrame({"x": [1.0, 2.0]})
    # Two real log_model calls (each costs seconds); the other versions reuse their artifacts.
    sources, runs = {}, {}
    for key, model in (("doubler", doubler), ("two_columns", two_columns)):
        with mlflow.start_run(experiment_id=exp_id) as run:
            signature = infer_signature(sample, model().predict(None, sample))
            info = mlflow.pyfunc.log_model(name="model", python_model=model(), signature=signature)
        sources[key], runs[key] = info.model_uri, run.info.run_id
    from greenlight.reconcile.mlflow import resolve_source

    client.create_registered_model(name)

    def version(source: str, status: str = "FINISHED") -> str:
        run = client.create_run(exp_id)
        client.set_terminated(run.info.run_id, status="FINISHED")
        if status != "FINISHED":
            client.update_run(run.info.run_id, status=status)
        mv = client.create_model_version(name, source, run_id=run.info.run_id)
        runs[int(mv.version)] = run.info.run_id
        return str(mv.version)  # an int from the SQL store

    good = resolve_source(client, sources["doubler"])
    good_uri = f"s3://{good.bucket}/{good.prefix}"
    assert version(good_uri) == "1" and version(good_uri) == "2"
    # version 3: a copy of the good model whose pickled model is gone from the artifact store
    broken = f"models-{tag}/broken-model/"
    for obj in s3.list_objects_v2(Bucket=good.bucket, Prefix=good.prefix).get("Contents", []):
        if not obj["Key"].endswith("python_model.pkl"):
            rel = obj["Key"][len(good.prefix) :]
            s3.copy_object(Bucket=good.bucket, Key=broken + rel, CopySource={"Bucket": good.bucket, "Key": obj["Key"]})
    assert version(f"s3://{good.bucket}/{broken}") == "3"
    wrong = resolve_source(client, sources["two_columns"])
    assert version(f"s3://{wrong.bucket}/{wrong.prefix}") == "4"  # returns two columns
    assert version(good_uri, status="RUNNING") == "5"  # its run is still RUNNING
    assert sorted(int(mv.version) for mv in client.search_model_versions(f"name='{name}'")) == [1, 2, 3, 4, 5]

    qa, prod = buckets
    partition = f"s3://{qa}/models-{tag}/features/date=2026-12-01/"
    s3.put_object(Bucket=qa, Key=f"models-{tag}/features/date=2026-12-01/part-0.csv", Body=b"x\n1.0\n2.0\n3.5\n")
    root = tmp / "task_manifests"
    config = tmp / "models.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pointer_uri": f"s3://{prod}/_greenlight/models-{tag}/",
                "models": {name: {"output": {"prediction": "float"}, "consumers": ["forecast_consumer"]}},
            }
        )
    )
    return {
        "tmp": tmp,
        "uri": uri,
        "client": client,
        "name": name,
        "runs": runs,
        "partition": partition,
        "config": config,
        "root": root,
        "pointer_key": f"_greenlight/models-{tag}/current/models/{name}.json",
        "prod": prod,
    }


def cleanup(registry: dict) -> None:
    shutil.rmtree(registry["tmp"], ignore_errors=True)


def alias_version(registry: dict, alias: str = "champion") -> str | None:
    try:
        return str(registry["client"].get_model_version_by_alias(registry["name"], alias).version)
    except Exception:  # noqa: BLE001 - no alias yet
        return None

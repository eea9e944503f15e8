"""A registered model for ``model_promotion`` on the local stack (``make airflow``, the e2e tests).

:func:`register` logs one small pyfunc model (it doubles a feature into ``prediction``, a float:
the output contract of ``yield-forecaster`` in ``include/config/models.yaml``) to the stack's
MLflow store with its artifacts on the stack's S3, registers it as a version of the model, and
writes a smoke partition (one CSV) to the QA bucket. Safe to call again: an existing version is
reused, the partition rewritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from greenlight.dev import devstack
from greenlight.reconcile.mlflow import resolve_source

MODEL = "yield-forecaster"
ARTIFACT_BUCKET = "mlflow-greenlight-demo"
EXPERIMENT = "greenlight-demo-models"
PARTITION_KEY = "models/yield-forecaster/features/date=2026-12-01/part-0.csv"


def _model_class():
    # local: mlflow ~3 s and pandas ~0.5 s to import; only the model demo step needs them
    import mlflow.pyfunc
    import pandas as pd

    class YieldForecaster(mlflow.pyfunc.PythonModel):
        """Stand-in forecaster: prediction = 2 x the ``x`` feature."""

        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"prediction": model_input["x"].astype(float) * 2.0})

    return YieldForecaster


@contextlib.contextmanager
def _env(values: dict[str, str]):
    """``values`` in the environment, and a fresh boto3 default session that reads them: MLflow's
    S3 artifact client comes from boto3's default session, which keeps the credentials it read
    first (in a test session, another S3 server's keys)."""
    import boto3  # local: boto3 costs ~0.4 s to import; only the model demo step needs it

    saved = {k: os.environ.get(k) for k in values}
    session = boto3.DEFAULT_SESSION
    os.environ.update(values)
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        boto3.DEFAULT_SESSION = session
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def register(tracking_uri: str, s3_env: dict[str, str], client, qa_bucket: str) -> dict[str, Any]:
    """The model's version (logged on the first call) and the smoke partition's URI."""
    # local: mlflow ~3 s and pandas ~0.5 s to import; only the model demo step needs them
    import pandas as pd
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    devstack.ensure_buckets(client, [ARTIFACT_BUCKET], versioned=False)
    client.put_object(Bucket=qa_bucket, Key=PARTITION_KEY, Body=b"x\n1.0\n2.0\n3.5\n")
    partition = f"s3://{qa_bucket}/{PARTITION_KEY.rsplit('/', 1)[0]}/"
    ml = MlflowClient(tracking_uri=tracking_uri)
    with contextlib.suppress(Exception):
        found = ml.search_model_versions(f"name='{MODEL}'")
        if found:
            return {"model": MODEL, "version": str(max(int(v.version) for v in found)), "partition": partition}
    # local: mlflow ~3 s to import (see above)
    import mlflow
    from mlflow.models import infer_signature

    with _env({**s3_env, "MLFLOW_S3_ENDPOINT_URL": s3_env["AWS_ENDPOINT_URL"]}):
        mlflow.set_tracking_uri(tracking_uri)
        experiment = ml.get_experiment_by_name(EXPERIMENT)
        exp_id = (
            experiment.experiment_id
            if experiment
            else ml.create_experiment(EXPERIMENT, artifact_location=f"s3://{ARTIFACT_BUCKET}/{EXPERIMENT}")
        )
        model = _model_class()()
        sample = pd.DataFrame({"x": [1.0, 2.0]})
        with mlflow.start_run(experiment_id=exp_id, run_name="yield-forecaster-demo") as run:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, signature=infer_signature(sample, model.predict(None, sample))
            )
        source = resolve_source(ml, info.model_uri)  # the files' s3:// location (what the checks read)
        with contextlib.suppress(Exception):
            ml.create_registered_model(MODEL)
        version = ml.create_model_version(MODEL, f"s3://{source.bucket}/{source.prefix}", run_id=run.info.run_id)
    return {"model": MODEL, "version": str(version.version), "partition": partition}

"""A registered model version whose source contains '..' is refused (exit 2) before anything is read
from or written to the artifact store (real MLflow SQLite store, real S3 server)."""

from __future__ import annotations

import json

import pytest
import yaml

from greenlight.cli import main as cli_main

BUCKET = "mlflow-greenlight-test"


@pytest.mark.parametrize("source", ["s3://{b}/{a}exp/1/artifacts/../../../outside/", "runs:/{r}/../../../x"])
def test_model_version_source_with_dotdot_is_refused(s3env, s3, area, tmp_path, monkeypatch, capsys, source):
    from mlflow.tracking import MlflowClient

    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3env.endpoint_url)
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("dots", artifact_location=f"s3://{BUCKET}/{area}exp")
    run = client.create_run(exp)
    client.create_registered_model("gl-dots")
    bad = source.format(b=BUCKET, a=area, r=run.info.run_id)
    client.create_model_version("gl-dots", bad)  # MLflow itself accepts it
    config = tmp_path / "reconcile.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "report_uri": str(tmp_path / "reports"),
                "targets": [
                    {
                        "name": "models",
                        "kind": "mlflow",
                        "tracking_uri": uri,
                        "experiments": ["dots"],
                        "registered_models": ["gl-dots"],
                    }
                ],
            }
        )
    )

    code = cli_main(["reconcile", "--config", str(config), "--repair"])

    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and out["kind"] == "config", out
    assert bad in out["error"] and "'..'" in out["error"]

"""QA preconditions that live outside S3: MLflow runs still RUNNING in the QA experiments."""

from __future__ import annotations

from typing import Any

from greenlight.errors import ConfigError


def running_runs(tracking_uri: str, experiments: list[str]) -> list[dict[str, Any]]:
    """Every RUNNING run in the named experiments (all pages). An unknown experiment is a config error."""
    # local: MLflow costs ~3 s to import; only an MLflow QA precondition needs it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    ids: dict[str, str] = {}
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            # The server is named as configured; every output path redacts URL credentials.
            raise ConfigError(
                f"mlflow_experiments: experiment {name!r} does not exist at the tracking server {tracking_uri}"
            )
        ids[experiment.experiment_id] = name
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids=list(ids),
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            found.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "experiment": ids.get(run.info.experiment_id, run.info.experiment_id),
                    "start_time": run.info.start_time,
                }
            )
        token = page.token
        if not token:
            return found

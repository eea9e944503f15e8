"""Task bodies of the ``model_promotion`` DAG; each calls the same library as ``greenlight model``."""

from __future__ import annotations

import logging
from typing import Any

from greenlight.dagsupport.runcheck import manifest_root_reader
from greenlight.dagsupport.runtime import mlflow_tracking_uri, s3_client, triaged
from greenlight.errors import ConfigError
from greenlight.models import config as models_config
from greenlight.models import promotion
from greenlight.models.consumers import models_of_consumer, resolve_heads

log = logging.getLogger("greenlight.tasks.models")


def _setup(model_name: str):
    config = models_config.load()
    model = config.model(model_name)
    s3 = s3_client(max_pool=8)
    return model, s3, promotion.mlflow_client(mlflow_tracking_uri()), promotion.pointer_store(config, s3)


@triaged
def check_candidate(model_name: str, candidate: str) -> dict[str, Any]:
    if not candidate:
        raise ConfigError("param candidate is required to promote (a model version, @alias or MLflow run id)")
    model, s3, ml, _ = _setup(model_name)
    checked = promotion.check_candidate(ml, s3, model.name, candidate)
    log.info("candidate %s of %s: version %s, files %s", candidate, model.name, checked["version"], checked["files"])
    return checked


@triaged
def smoke_score(checked: dict[str, Any], partition: str) -> dict[str, Any]:
    if not partition:
        raise ConfigError("param smoke_partition is required: a candidate is never promoted without a smoke score")
    model, s3, _, _ = _setup(checked["model"])
    return promotion.smoke_score(s3, checked, partition, model)


@triaged
def promote_model(checked: dict[str, Any], smoke: dict[str, Any], *, run_id: str, dry_run: bool) -> dict[str, Any]:
    model, _, ml, store = _setup(checked["model"])
    if dry_run:
        log.info("dry run: would move %s@%s to version %s", model.name, model.alias, checked["version"])
        return {"dry_run": True, "model": model.name, "version": checked["version"]}
    return promotion.publish(ml, store, model, checked, run_id=run_id, smoke=smoke)


@triaged
def rollback_model(model_name: str, *, run_id: str, dry_run: bool) -> dict[str, Any]:
    model, _, ml, store = _setup(model_name)
    if dry_run:
        current = store.read(promotion.pointer_path(model.name)) or {}
        log.info("dry run: would restore %s", (current.get("previous") or {}).get("version"))
        return {"dry_run": True, "model": model.name}
    try:
        manifests = manifest_root_reader()
    except Exception:  # noqa: BLE001 - no manifest root: the rollback still happens, without the run list
        manifests = None
    result = promotion.rollback(ml, store, model, run_id=run_id, manifests=manifests)
    for used in result["runs_using_rolled_back_version"]:
        log.warning("run %s of %s used the rolled-back version (%s)", used["run_id"], used["dag_id"], used["task"])
    return result


def asset_event(result: dict[str, Any]) -> dict[str, Any] | None:
    """The pointer's Asset event (consumers schedule on it), or None for a dry run."""
    if result.get("dry_run") or not result.get("pointer"):
        return None
    return {
        "uri": result["pointer"],
        "name": f"model-head-{result['model']}",
        "extra": {
            k: result.get(k)
            for k in (
                "model",
                "alias",
                "version",
                "previous_version",
                "rolled_back_version",
                "restored_version",
                "run_id",
            )
            if result.get(k) is not None
        },
    }


@triaged
def consumer_heads(dag_id: str) -> list[dict[str, Any]]:
    """The model heads consumer ``dag_id`` loads (models.yaml lists it under ``consumers``): read
    from each model's ``current/models/<name>.json``; the task returns them so its manifest
    records the versions (``greenlight model check-consumer`` reads them)."""
    config = models_config.load()
    if not models_of_consumer(config, dag_id):
        return []
    heads = resolve_heads(config, promotion.pointer_store(config, s3_client(max_pool=4)), dag_id)
    for head in heads:
        log.info("loading %s (%s@%s)", head["model_uri"], head["model"], head["model_alias"])
    return heads

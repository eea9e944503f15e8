"""The consumer side of a model promotion: which head a consumer run loaded, and whether the first
consumer run after a promotion (or rollback) used it.

A consumer DAG is listed under its model's ``consumers`` in ``models.yaml``. Its task resolves the
head through :func:`resolve_heads` (the ``current/models/<name>.json`` pointer the promotion wrote
together with the alias) and returns the records: the task manifest then says, for that run,
``{"model": name, "model_version": "7", "model_alias": "champion", ...}`` — the convention
:func:`greenlight.models.promotion.runs_using` (rollback) and :func:`check_consumer` read.

No MLflow import here: the pointer names the version, and a consumer loads
``models:/<name>/<version>`` (pinned, not the moving alias) so the record is what it used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from greenlight.models.config import ModelConfig, ModelsConfig
from greenlight.storage.manifests import ManifestStore, safe_name
from greenlight.storage.s3 import parse_s3_uri


def pointer_path(name: str) -> str:
    return f"current/models/{safe_name(name)}.json"


def models_of_consumer(config: ModelsConfig, dag_id: str) -> list[ModelConfig]:
    """The configured models whose ``consumers`` list ``dag_id``."""
    return [m for m in config.models.values() if dag_id in m.consumers]


def head_asset(config: ModelsConfig, model: ModelConfig) -> dict[str, str]:
    """URI and name of the Asset ``model_promotion`` emits when it moves ``model``'s head (the
    pointer's URI, as ``ManifestStore.uri`` gives it): consumers schedule on it. No client needed."""
    rel = pointer_path(model.name)
    if config.pointer_uri.startswith("s3://"):
        loc = parse_s3_uri(config.pointer_uri, what="models pointer_uri")
        uri = f"s3://{loc.bucket}/{loc.prefix}{rel}"
    else:
        uri = ManifestStore(config.pointer_uri, None).uri(rel)
    return {"uri": uri, "name": f"model-head-{model.name}"}


def resolve_heads(config: ModelsConfig, store, dag_id: str) -> list[dict[str, Any]]:
    """What a run of consumer ``dag_id`` loads: one record per configured model that has a head
    (a model never promoted has no pointer and is left out)."""
    records = []
    for model in models_of_consumer(config, dag_id):
        pointer = store.read(pointer_path(model.name))
        if not pointer or pointer.get("version") is None:
            continue
        records.append(
            {
                "model": model.name,
                "model_version": str(pointer["version"]),
                "model_alias": pointer.get("alias") or model.alias,
                "model_uri": f"models:/{model.name}/{pointer['version']}",
                "head_run_id": pointer.get("run_id"),
            }
        )
    return records


def models_used(outputs: Any) -> list[dict[str, Any]]:
    """The model records in a task manifest's ``outputs``: a record itself, a list of records, or
    a dict with a ``models`` list of records."""
    items = outputs if isinstance(outputs, list) else [outputs]
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("model") and item.get("model_version") is not None:
            found.append(item)
        found += [m for m in item.get("models") or () if isinstance(m, dict) and m.get("model")]
    return found


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


def consumer_runs(root, dag_id: str, name: str) -> list[dict[str, Any]]:
    """Every run of consumer ``dag_id`` with task manifests: when it started and which version of
    ``name`` it recorded (None if it recorded none), oldest first."""
    runs = []
    for folder in root.run_folders(dag_id):
        docs = root.read_run(dag_id, folder)
        if not docs:
            continue
        starts = [t for t in (_time(d.get("start")) for d in docs.values()) if t is not None]
        used = [
            (task, m) for task, d in sorted(docs.items()) for m in models_used(d.get("outputs")) if m["model"] == name
        ]
        first = next(iter(docs.values()))
        runs.append(
            {
                "dag_id": dag_id,
                "run_id": first.get("run_id") or folder,
                "started": min(starts).isoformat() if starts else None,
                "model_version": str(used[0][1]["model_version"]) if used else None,
                "task": used[0][0] if used else None,
                "state": "running" if any(d.get("state") == "running" for d in docs.values()) else "finished",
            }
        )
    return sorted((r for r in runs if r["started"]), key=lambda r: _time(r["started"]))


def check_consumer(config: ModelsConfig, model: ModelConfig, store, root) -> dict[str, Any]:
    """Did the first consumer run after the head last moved use the head's version?

    ``status``: ``ok`` (it did), ``old_version`` (it loaded another version), ``not_recorded``
    (its manifests record no version of the model), ``pending`` (no consumer run has started
    since, or it has not recorded the model yet), ``no_head`` (never promoted)."""
    pointer = store.read(pointer_path(model.name))
    report: dict[str, Any] = {
        "model": model.name,
        "alias": model.alias,
        "pointer": store.uri(pointer_path(model.name)),
        "consumers": list(model.consumers),
    }
    if not pointer or pointer.get("version") is None:
        return {**report, "status": "no_head", "ok": False, "message": f"model {model.name} has no head yet"}
    moved_at = pointer.get("restored_at") or pointer.get("published_at")
    restored = pointer.get("restored_from") if isinstance(pointer.get("restored_from"), dict) else {}
    head = {
        "version": str(pointer["version"]),
        "moved_at": moved_at,
        "moved_by_run": restored.get("by_run") or pointer.get("run_id"),
        "how": "rollback" if pointer.get("restored_at") else "promotion",
    }
    report["head"] = head
    if not model.consumers:
        return {
            **report,
            "status": "no_consumers",
            "ok": False,
            "message": f"models.yaml lists no consumers of {model.name}",
        }
    since = _time(moved_at)
    after = []
    for dag_id in model.consumers:
        after += [r for r in consumer_runs(root, dag_id, model.name) if since is None or _time(r["started"]) >= since]
    after.sort(key=lambda r: _time(r["started"]))
    if not after:
        return {
            **report,
            "status": "pending",
            "ok": False,
            "message": f"no run of {', '.join(model.consumers)} has started since the head moved to "
            f"version {head['version']} at {moved_at}",
        }
    first = after[0]
    report["first_run"] = first
    if first["model_version"] is None:
        status = "pending" if first["state"] == "running" else "not_recorded"
        what = "has not recorded" if status == "pending" else "recorded no"
        return {
            **report,
            "status": status,
            "ok": False,
            "message": f"run {first['run_id']} of {first['dag_id']} {what} version of {model.name} in its task manifests",
        }
    if first["model_version"] != head["version"]:
        return {
            **report,
            "status": "old_version",
            "ok": False,
            "message": f"run {first['run_id']} of {first['dag_id']} used {model.name} version {first['model_version']}, "
            f"not the head {head['version']} ({head['how']} by {head['moved_by_run']})",
        }
    return {
        **report,
        "status": "ok",
        "ok": True,
        "message": f"run {first['run_id']} of {first['dag_id']} used {model.name} version {head['version']}",
    }

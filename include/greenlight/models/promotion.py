"""Promote a model head atomically and reversibly (operations runbook, "Promoting model heads").

1. :func:`check_candidate` — the candidate (a model version, ``@alias`` or MLflow run id) exists,
   its run is FINISHED, and its artifact store holds ``MLmodel`` plus every file ``MLmodel`` names
   (the reconciliation check's :func:`~greenlight.reconcile.mlflow.mlmodel_refs` /
   :func:`~greenlight.reconcile.mlflow.resolve_source`) and a signature (or ``meta.json``).
2. :func:`smoke_score` — load it from those files, score a recent partition, publish nothing, and
   check the output's shape (rows, columns, types) against the model's output contract.
3. :func:`publish` — move the registered model's alias (default ``champion``) and write
   ``current/models/<name>.json`` (keeping the previous head) as one step: if the pointer write
   fails the alias is put back. Under one run id a second publish is a no-op when identical and
   refused otherwise (retry category B).
4. :func:`rollback` — restore the previous alias and pointer, and list the consumer runs whose
   task manifests record the rolled-back version.

Any failed check raises before anything moves: ``RefusedError`` / ``ContractError`` (exit 2),
naming the candidate. MLflow is imported inside the functions: it takes seconds to import.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from greenlight.errors import ContractError, MissingInputError, RefusedError
from greenlight.inputs import read_input, require_partition
from greenlight.models.config import ModelConfig, ModelsConfig
from greenlight.models.consumers import models_used
from greenlight.promotion.gates import ensure_same_publish
from greenlight.reconcile.mlflow import mlmodel_refs, resolve_source
from greenlight.storage.manifests import ManifestStore, safe_name, utcnow
from greenlight.storage.s3 import list_prefix, parse_s3_uri

log = logging.getLogger("greenlight.models")

POINTER_KIND = "greenlight.model-pointer/v1"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def mlflow_client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient  # slow import (seconds): only when a model is handled

    return MlflowClient(tracking_uri=tracking_uri)


def pointer_path(name: str) -> str:
    return f"current/models/{safe_name(name)}.json"


def pointer_store(config: ModelsConfig, s3) -> ManifestStore:
    return ManifestStore(config.pointer_uri, s3 if config.pointer_uri.startswith("s3://") else None)


# ------------------------------------------------------------------------------------- check
def resolve_candidate(ml, name: str, candidate: str):
    """The model version a candidate names: ``7`` / ``v7``, ``@alias`` (or an alias name), or a
    32-hex MLflow run id (its newest version of ``name``)."""
    label = f"candidate {candidate!r} of model {name}"
    text = str(candidate).strip()
    try:
        if re.fullmatch(r"v?\d+", text):
            return ml.get_model_version(name, text.lstrip("v"))
        if _RUN_ID.match(text):
            found = ml.search_model_versions(f"name='{name}' and run_id='{text}'")
            if not found:
                raise RefusedError(label, f"run {text} has no version of registered model {name}")
            return max(found, key=lambda mv: int(mv.version))
        return ml.get_model_version_by_alias(name, text.lstrip("@"))
    except RefusedError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own RestException for "not found"
        raise RefusedError(label, f"not found in the registry ({type(exc).__name__}: {str(exc)[:200]})") from exc


def check_candidate(ml, s3, name: str, candidate: str) -> dict[str, Any]:
    """Refuse (``RefusedError``, exit 2) a candidate that is not FINISHED or whose files are not
    all in the artifact store; returns what was checked."""
    mv = resolve_candidate(ml, name, candidate)
    label = f"candidate {candidate!r} of model {name} (version {mv.version})"
    if mv.run_id:
        status = ml.get_run(mv.run_id).info.status
        if status != "FINISHED":
            raise RefusedError(label, f"its MLflow run {mv.run_id} is {status}, not FINISHED")
    loc = resolve_source(ml, mv.source)
    if loc is None:
        raise RefusedError(label, f"source {mv.source} is not in the S3 artifact store: its files cannot be checked")
    listing = list_prefix(s3, loc)
    if "MLmodel" not in listing:
        raise RefusedError(label, f"s3://{loc.bucket}/{loc.prefix}MLmodel is missing from the artifact store")
    text = s3.get_object(Bucket=loc.bucket, Key=loc.prefix + "MLmodel")["Body"].read()
    refs = mlmodel_refs(text)
    missing = [r for r in refs if r not in listing and not any(k.startswith(r.rstrip("/") + "/") for k in listing)]
    if missing:
        where = ", ".join(f"s3://{loc.bucket}/{loc.prefix}{r}" for r in missing)
        raise RefusedError(label, f"MLmodel names files missing from the artifact store: {where}")
    doc = yaml.safe_load(text) or {}
    if not doc.get("signature") and "meta.json" not in listing:
        raise RefusedError(label, "no model signature in MLmodel and no meta.json: the output cannot be checked")
    return {
        "model": name,
        "version": str(mv.version),
        "model_run_id": mv.run_id,
        "source": mv.source,
        "artifact": f"s3://{loc.bucket}/{loc.prefix}",
        "files": sorted(["MLmodel", *refs]),
        "checks": [{"name": "run_finished", "ok": True}, {"name": "files_present", "ok": True}],
    }


# ---------------------------------------------------------------------------------- smoke score
def _read_partition(s3, uri: str):
    import pandas as pd  # heavy import: only when scoring

    files = [k for k in require_partition(s3, uri) if k.endswith((".csv", ".parquet"))]
    if not files:
        raise MissingInputError(uri, "no .csv or .parquet file in the partition")
    frames = []
    for key in sorted(files)[:4]:
        full = key if not uri.startswith("s3://") else f"s3://{uri[5:].split('/', 1)[0]}/{key}"
        body = read_input(s3, full)
        frames.append(pd.read_parquet(io.BytesIO(body)) if key.endswith(".parquet") else pd.read_csv(io.BytesIO(body)))
    return pd.concat(frames, ignore_index=True), [str(f) for f in sorted(files)[:4]]


def _as_frame(output, columns: list[str]):
    # local: pandas ~0.5 s + numpy ~0.1 s to import, only when scoring
    import numpy as np
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        return output
    if isinstance(output, pd.Series):
        return output.to_frame(columns[0] if len(columns) == 1 else (output.name or 0))
    arr = np.asarray(output)
    if arr.ndim == 1:
        return pd.DataFrame({columns[0] if len(columns) == 1 else 0: arr})
    return pd.DataFrame(arr)


def _type_ok(series, logical: str) -> bool:
    from pandas.api import types  # local: pandas ~0.5 s to import, only when scoring

    return {
        "float": types.is_float_dtype,
        "int": types.is_integer_dtype,
        "bool": types.is_bool_dtype,
        "string": lambda s: types.is_string_dtype(s) or types.is_object_dtype(s),
    }[logical](series)


def smoke_score(s3, checked: dict[str, Any], partition_uri: str, model: ModelConfig) -> dict[str, Any]:
    """Score ``partition_uri`` with the checked candidate's own files; publish nothing; raise
    ``ContractError`` (exit 2) when the output's rows, columns or types differ from the contract."""
    import mlflow.pyfunc  # slow import: only when scoring

    frame, files = _read_partition(s3, partition_uri)
    loc = parse_s3_uri(checked["artifact"], what="model artifact")
    with tempfile.TemporaryDirectory(prefix="gl-model-") as tmp:
        for rel in list_prefix(s3, loc):
            target = Path(tmp) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=loc.bucket, Key=loc.prefix + rel)["Body"].read())
        location = f"models:/{checked['model']}/{checked['version']}"
        try:
            output = mlflow.pyfunc.load_model(tmp).predict(frame)
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot score a recent partition is refused
            reason = str(exc).replace("\n", " ")[:500]
            raise ContractError(
                location, f"smoke score on {partition_uri} failed: {type(exc).__name__}: {reason}"
            ) from exc
    expected = model.output
    out = _as_frame(output, list(expected))
    problems = []
    if len(out) != len(frame):
        problems.append(f"{len(out)} output rows for {len(frame)} input rows")
    if expected:
        got = [str(c) for c in out.columns]
        if sorted(got) != sorted(expected):
            problems.append(f"output columns {got}, contract {sorted(expected)}")
        else:
            problems += [
                f"column {c!r} is {out[c].dtype}, contract {t}" for c, t in expected.items() if not _type_ok(out[c], t)
            ]
    if problems:
        raise ContractError(location, f"smoke score on {partition_uri}: " + "; ".join(problems))
    return {
        "model": checked["model"],
        "version": checked["version"],
        "partition": partition_uri,
        "files": files,
        "rows": len(frame),
        "columns": {str(c): str(out[c].dtype) for c in out.columns},
        "checks": [{"name": "output_shape", "ok": True}],
    }


# ------------------------------------------------------------------------------ publish / rollback
def _alias_version(ml, name: str, alias: str) -> str | None:
    try:
        return str(ml.get_model_version_by_alias(name, alias).version)
    except Exception:  # noqa: BLE001 - no such alias yet
        return None


def _set_alias(ml, name: str, alias: str, version: str | None) -> None:
    if version is None:
        ml.delete_registered_model_alias(name, alias)
    else:
        ml.set_registered_model_alias(name, alias, version)


def publish(
    ml, store: ManifestStore, model: ModelConfig, checked: dict[str, Any], *, run_id: str, smoke: dict | None = None
) -> dict[str, Any]:
    """Move the alias to the checked version and write the pointer, keeping the previous head; both
    or neither (a failed pointer write puts the alias back)."""
    rel = pointer_path(model.name)
    old = store.read(rel)
    fields = {
        "model": model.name,
        "alias": model.alias,
        "version": checked["version"],
        "model_run_id": checked.get("model_run_id"),
        "source": checked.get("source"),
        "run_id": run_id,
    }
    if old and old.get("run_id") == run_id:
        ensure_same_publish(store.uri(rel), old, fields)
        return {**fields, "pointer": store.uri(rel), "previous_version": (old.get("previous") or {}).get("version")}
    before = _alias_version(ml, model.name, model.alias)
    previous = {k: v for k, v in (old or {}).items() if k != "previous"} or None
    if previous is None and before is not None:  # an alias set by hand before greenlight managed it
        previous = {"model": model.name, "alias": model.alias, "version": before, "run_id": None}
    doc = {"kind": POINTER_KIND, **fields, "published_at": utcnow(), "smoke": smoke, "previous": previous}
    _set_alias(ml, model.name, model.alias, checked["version"])
    try:
        where = store.write(rel, doc)
    except Exception:
        _set_alias(ml, model.name, model.alias, before)  # neither moves
        raise
    log.info("model %s: alias %s %s -> %s; pointer %s", model.name, model.alias, before, checked["version"], where)
    return {**fields, "pointer": where, "previous_version": (previous or {}).get("version")}


def runs_using(root, consumers: tuple[str, ...] | list[str], name: str, version: str) -> list[dict[str, Any]]:
    """Consumer runs whose task manifests record ``{"model": name, "model_version": version}`` in
    their outputs (the convention a consumer task follows when it loads a model)."""
    if root is None:
        return []
    found = []
    for dag_id in consumers:
        for folder in root.run_folders(dag_id):
            for task, doc in root.read_run(dag_id, folder).items():
                if any(
                    i.get("model") == name and str(i.get("model_version")) == str(version)
                    for i in models_used(doc.get("outputs"))
                ):
                    found.append({"dag_id": dag_id, "run_id": doc.get("run_id"), "task": task})
    return sorted(found, key=lambda r: (r["dag_id"], str(r["run_id"]), r["task"]))


def rollback(ml, store: ManifestStore, model: ModelConfig, *, run_id: str, manifests=None) -> dict[str, Any]:
    """Put the previous head back (alias and pointer); refuse when there is none. Lists the
    consumer runs that used the rolled-back version (from their task manifests)."""
    rel = pointer_path(model.name)
    current = store.read(rel)
    if not current or not (current.get("previous") or {}).get("version"):
        raise RefusedError(
            f"model {model.name}", f"no previous head recorded in {store.uri(rel)}: nothing to roll back to"
        )
    previous = current["previous"]
    before = _alias_version(ml, model.name, model.alias)
    doc = {
        **previous,
        "kind": POINTER_KIND,
        "previous": None,
        "restored_at": utcnow(),
        "restored_from": {"version": current.get("version"), "run_id": current.get("run_id"), "by_run": run_id},
    }
    _set_alias(ml, model.name, model.alias, str(previous["version"]))
    try:
        where = store.write(rel, doc)
    except Exception:
        _set_alias(ml, model.name, model.alias, before)
        raise
    used = runs_using(manifests, model.consumers, model.name, str(current.get("version")))
    log.warning(
        "model %s rolled back: alias %s %s -> %s; %d consumer run(s) used version %s",
        model.name,
        model.alias,
        current.get("version"),
        previous["version"],
        len(used),
        current.get("version"),
    )
    return {
        "model": model.name,
        "alias": model.alias,
        "rolled_back_version": str(current.get("version")),
        "restored_version": str(previous["version"]),
        "pointer": where,
        "runs_using_rolled_back_version": used,
    }

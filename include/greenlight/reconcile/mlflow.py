"""MLflow ↔ S3 artifact store: does the store hold what MLflow's records point at?

Runbook "MLflow → MinIO Sync Recovery", steps 2-5. MLflow has no "verify artifacts exist" call,
and with an ``s3://`` artifact root its own ``list_artifacts`` *is* an S3 listing, so it cannot
reveal a gap. What MLflow does record, and what is checked here against ONE listing of each
experiment's artifact location (first-level prefixes listed in parallel):

- every registered model version's ``source`` (``models:/<model_id>``, ``runs:/<run>/<path>`` or
  ``s3://``) must hold an ``MLmodel``, and the files that ``MLmodel`` names (pickled model,
  ``conda.yaml``, ``python_env.yaml``, model data);
- every logged model (MLflow 3) of the checked experiments the same;
- every artifact of an active run that a previous reconciliation saw (the *baseline*, kept in the
  report store under ``state/``): MLflow's listing of a run, recursively, is recorded each time,
  so an artifact deleted later is reported with its run and path. The first run records only.

Orphans: first-level prefixes of an experiment's artifact location whose run is deleted
(``mlflow gc`` would purge it) or unknown to the tracking store, and ``models/<id>/`` prefixes of
unknown logged models. Orphans are reported, never deleted (a human decision).

Repair: a missing artifact is uploaded from ``restore_dir`` when a copy is there. ``restore_dir``
mirrors the store in MLflow's own ``mlruns`` layout: ``<restore_dir>/<experiment_id>/<run_id>/
artifacts/...`` and ``<restore_dir>/<experiment_id>/models/<model_id>/artifacts/...``. A copy whose
size differs from the baseline's is not used.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from greenlight.errors import ConfigError
from greenlight.reconcile.common import FAILED, RECOVERABLE, REPAIRED, UNRECOVERABLE, TargetResult, upload_file
from greenlight.redact import redact_urls
from greenlight.storage.s3 import S3Uri, list_prefix, parse_s3_uri

log = logging.getLogger("greenlight.reconcile.mlflow")

#: MLmodel flavor keys whose value is a path relative to the model directory.
_PATH_KEYS = {"python_model", "pickled_model", "model_path", "data", "model_data", "saved_model_dir", "model_file"}


def _pages(call, *args, **kwargs) -> list:
    out, token = [], None
    while True:
        page = call(*args, page_token=token, **kwargs)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def _s3(uri: str | None) -> S3Uri | None:
    if not uri or not uri.startswith("s3://"):
        return None
    return parse_s3_uri(uri, what="artifact location")


def mlmodel_refs(text: bytes) -> list[str]:
    """Relative paths an ``MLmodel`` file names (environment files, model files, data)."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return []
    refs: list[str] = []
    for flavor in (doc.get("flavors") or {}).values():
        if not isinstance(flavor, dict):
            continue
        env = flavor.get("env")
        if isinstance(env, dict):
            refs += [v for v in env.values() if isinstance(v, str)]
        elif isinstance(env, str):
            refs.append(env)
        refs += [v for k, v in flavor.items() if k in _PATH_KEYS and isinstance(v, str)]
    clean = []
    for ref in refs:
        ref = posixpath.normpath(ref)
        if ref and not ref.startswith(("/", "..")) and "://" not in ref and ref not in clean:
            clean.append(ref)
    return clean


def resolve_source(ml, source: str) -> S3Uri | None:
    """The S3 prefix of a model version's ``source`` (``s3://``, ``models:/<model_id>``, ``runs:/<run>/<path>``),
    None when it is not on S3 or cannot be resolved. Shared with model promotion's candidate check."""
    if source.startswith("s3://"):
        return _s3(source.rstrip("/") + "/")
    if source.startswith("models:/"):
        ident = source[len("models:/") :].strip("/")
        if "/" in ident:
            return None  # models:/<name>/<version>: resolved through the version that owns it
        try:
            return _s3(ml.get_logged_model(ident).artifact_location.rstrip("/") + "/")
        except Exception:  # noqa: BLE001 - an unknown model id: the version's files cannot be located
            return None
    if source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/") :].partition("/")
        try:
            base = ml.get_run(run_id).info.artifact_uri.rstrip("/")
        except Exception:  # noqa: BLE001
            return None
        return _s3(f"{base}/{path}".rstrip("/") + "/")
    return None


class MlflowCheck:
    def __init__(self, target, client, *, tracking_uri: str | None, state_store=None, workers: int = 32):
        from mlflow.tracking import MlflowClient  # local: mlflow costs ~3 s to import; only MLflow targets need it

        uri = target.tracking_uri or tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ConfigError(
                f"target {target.name}: no MLflow tracking URI (set tracking_uri, $MLFLOW_TRACKING_URI or the "
                "Airflow connection mlflow_default)"
            )
        self.target = target
        self.s3 = client
        self.ml = MlflowClient(tracking_uri=uri)
        self.tracking_uri = uri
        self.state = state_store
        self.workers = workers
        self.listings: dict[S3Uri, dict[str, Any]] = {}  # artifact root -> rel -> ObjectInfo
        self.exp_roots: dict[str, S3Uri] = {}  # experiment id -> artifact location

    # ------------------------------------------------------------------ listings
    def _present(self, bucket: str, key: str, pool) -> tuple[bool, Any]:
        """Is ``key`` an object (or, when it ends with '/', a non-empty prefix)? From the listings."""
        for root, listing in self.listings.items():
            if root.bucket == bucket and key.startswith(root.prefix):
                rel = key[len(root.prefix) :]
                if rel.endswith("/"):
                    return any(r.startswith(rel) for r in listing), None
                info = listing.get(rel)
                return (info is not None or any(r.startswith(rel + "/") for r in listing)), info
        root = S3Uri(bucket, key.rsplit("/", 1)[0] + "/" if "/" in key else "")
        self.listings[root] = list_prefix(self.s3, root, pool=pool)
        return self._present(bucket, key, pool)

    def _read(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception:  # noqa: BLE001 - absent or unreadable: treated as absent, reported by the caller
            return None

    def _restore_path(self, bucket: str, key: str) -> Path | None:
        if not self.target.restore_dir:
            return None
        for exp_id, root in self.exp_roots.items():
            base = root.prefix
            if root.bucket == bucket and key.startswith(base):
                return Path(self.target.restore_dir) / exp_id / key[len(base) :]
        return None

    # ------------------------------------------------------------------ check
    def run(self, *, repair: bool, dry_run: bool) -> TargetResult:
        from mlflow.entities import ViewType  # local: mlflow costs ~3 s to import; only MLflow targets need it

        started = time.monotonic()
        t = self.target
        result = TargetResult(t.name, "mlflow")
        state_key = f"state/mlflow-{t.name}.json"
        baseline = (self.state.read(state_key) if self.state else None) or {}
        baseline_runs: dict[str, dict[str, int]] = baseline.get("runs", {})

        for exp in _pages(self.ml.search_experiments, view_type=ViewType.ALL, max_results=1000):
            root = _s3(exp.artifact_location)
            if root is not None:
                self.exp_roots[exp.experiment_id] = root
        if t.experiments:
            experiments = []
            for name in t.experiments:
                exp = self.ml.get_experiment_by_name(name)
                if exp is None:
                    raise ConfigError(
                        f"target {t.name}: experiments: {name!r} does not exist in {_safe_uri(self.tracking_uri)}"
                    )
                experiments.append(exp)
        else:
            experiments = _pages(self.ml.search_experiments, view_type=ViewType.ACTIVE_ONLY, max_results=1000)

        needed: dict[tuple[str, str], dict[str, Any]] = {}  # (bucket, key) -> entry

        def need(bucket: str, key: str, **info: Any) -> None:
            entry = needed.get((bucket, key))
            if entry is None:
                needed[(bucket, key)] = {"what": f"s3://{bucket}/{key}", **info, "needed_by": [info["needed_by"]]}
            elif info["needed_by"] not in entry["needed_by"]:
                entry["needed_by"].append(info["needed_by"])

        new_baseline: dict[str, dict[str, int]] = {}
        run_roots: dict[str, tuple[S3Uri, str]] = {}
        counts = {"experiments": 0, "runs": 0, "logged_models": 0, "model_versions": 0}
        with ThreadPoolExecutor(self.workers) as pool:
            for exp in experiments:
                root = _s3(exp.artifact_location)
                if root is None:
                    result.notes.append(
                        f"experiment {exp.name}: artifact location {exp.artifact_location} is not s3://"
                    )
                    continue
                counts["experiments"] += 1
                listing = self.listings[root] = list_prefix(self.s3, root, pool=pool)
                runs = {
                    r.info.run_id: r
                    for r in _pages(self.ml.search_runs, [exp.experiment_id], run_view_type=ViewType.ALL)
                }
                models = {m.model_id: m for m in _pages(self.ml.search_logged_models, [exp.experiment_id])}
                for run_id, run in runs.items():
                    if run.info.lifecycle_stage != "active":
                        continue
                    counts["runs"] += 1
                    art = _s3(run.info.artifact_uri)
                    if art is None:
                        continue
                    run_roots[run_id] = (art, exp.experiment_id)
                    for rel, size in (baseline_runs.get(run_id) or {}).items():
                        need(
                            art.bucket,
                            art.prefix + rel,
                            kind="run_artifact",
                            run_id=run_id,
                            path=rel,
                            size=size,
                            needed_by=f"run {run_id} ({exp.name})",
                        )
                for model_id, model in models.items():
                    counts["logged_models"] += 1
                    loc = _s3(model.artifact_location)
                    if loc is not None and str(getattr(model.status, "name", model.status)).upper() in ("READY", "2"):
                        self._need_model(loc, f"logged model {model_id} ({exp.name})", need, pool, model_id=model_id)
                result.orphans += self._orphans(root, listing, runs, models)

            if t.registered_models != "none":
                for mv in self._model_versions():
                    counts["model_versions"] += 1
                    loc = self._resolve_source(mv.source)
                    label = f"model version {mv.name} v{mv.version}"
                    if loc is None:
                        result.notes.append(f"{label}: source {mv.source} is not on S3, not checked")
                        continue
                    self._need_model(loc, label, need, pool, model=mv.name, version=str(mv.version))

            missing = []
            for (bucket, key), entry in sorted(needed.items()):
                present, _ = self._present(bucket, key, pool)
                if not present:
                    missing.append((bucket, key, entry))
            result.checked = len(needed)
            result.entries = list(
                pool.map(lambda m: self._resolve(m[0], m[1], m[2], repair=repair, dry_run=dry_run), missing)
            )

            # The new baseline: what each active run holds now, plus what is still missing.
            for run_id, (art, _exp_id) in run_roots.items():
                files = {}
                for root, listing in self.listings.items():
                    if root.bucket == art.bucket and art.prefix.startswith(root.prefix):
                        sub = art.prefix[len(root.prefix) :]
                        files = {rel[len(sub) :]: info.size for rel, info in listing.items() if rel.startswith(sub)}
                        break
                for e in result.entries:  # still expected until repaired or re-logged
                    if e.get("run_id") == run_id:
                        files[e["path"]] = e.get("size")
                new_baseline[run_id] = files
        if self.state is not None:
            self.state.write(
                state_key, {"target": t.name, "tracking_uri": _safe_uri(self.tracking_uri), "runs": new_baseline}
            )
        result.details = {**counts, "tracking_uri": _safe_uri(self.tracking_uri), "baseline_runs": len(baseline_runs)}
        if not baseline_runs:
            result.notes.append(
                "no baseline of run artifacts yet: this run recorded one; deleted run artifacts are "
                "found from the next run on"
            )
        result.duration_s = time.monotonic() - started
        return result

    def _model_versions(self) -> list:
        names = self.target.registered_models
        if names == "all":
            return _pages(self.ml.search_model_versions, max_results=10000)
        out = []
        for name in names:
            escaped = name.replace("'", "\\'")
            out += _pages(self.ml.search_model_versions, f"name='{escaped}'", max_results=10000)
        return out

    def _resolve_source(self, source: str) -> S3Uri | None:
        if ".." in source.replace("\\", "/").split("/"):
            # A model version's source is user-controlled: '..' could name files outside its run.
            raise ConfigError(
                f"target {self.target.name}: model version source {source!r} contains '..': refused "
                "(fix the model version's source in MLflow)"
            )
        return resolve_source(self.ml, source)

    def _need_model(self, loc: S3Uri, label: str, need, pool, **info: Any) -> None:
        mlmodel = loc.prefix + "MLmodel"
        need(loc.bucket, mlmodel, kind="model", path="MLmodel", needed_by=label, **info)
        present, _ = self._present(loc.bucket, mlmodel, pool)
        text = self._read(loc.bucket, mlmodel) if present else None
        if text is None:
            restore = self._restore_path(loc.bucket, mlmodel)
            text = restore.read_bytes() if restore is not None and restore.is_file() else None
        for ref in mlmodel_refs(text or b""):
            need(loc.bucket, loc.prefix + ref, kind="model", path=ref, needed_by=label, **info)

    def _orphans(self, root: S3Uri, listing: dict[str, Any], runs: dict, models: dict) -> list[dict[str, Any]]:
        groups: dict[str, list[Any]] = {}
        for rel, info in listing.items():
            head = rel.split("/", 1)[0]
            if head == "models" and rel.count("/") >= 2:
                head = "/".join(rel.split("/", 2)[:2])
            groups.setdefault(head, []).append(info)
        out = []
        for head, infos in sorted(groups.items()):
            if head.startswith("models/"):
                model_id = head.split("/", 1)[1]
                if model_id in models:
                    continue
                reason = "logged model unknown to the tracking store"
            elif head in runs:
                if runs[head].info.lifecycle_stage == "active":
                    continue
                reason = "run is deleted (`mlflow gc` would purge it)"
            elif "/" not in head and len(infos) == 1 and infos[0].rel == head:
                continue  # a loose file at the experiment root (not a run prefix)
            else:
                reason = "run unknown to the tracking store"
            out.append(
                {
                    "what": f"s3://{root.bucket}/{root.prefix}{head}/",
                    "reason": reason,
                    "objects": len(infos),
                    "bytes": sum(i.size for i in infos),
                    "action": "review, then delete the prefix or restore the run (never deleted automatically)",
                }
            )
        return out

    # ------------------------------------------------------------------ repair
    def _resolve(self, bucket: str, key: str, entry: dict[str, Any], *, repair: bool, dry_run: bool) -> dict[str, Any]:
        entry = dict(entry)
        path = self._restore_path(bucket, key)
        tried = "no restore_dir configured" if not self.target.restore_dir else f"no copy at {path}"
        if path is not None and not path.resolve().is_relative_to(Path(self.target.restore_dir).resolve()):
            tried = f"{path} resolves outside restore_dir {self.target.restore_dir}; not read"
            path = None
        usable = path is not None and path.is_file()
        if usable and entry.get("size") is not None and path.stat().st_size != entry["size"]:
            usable, tried = False, f"copy at {path} has {path.stat().st_size} bytes, expected {entry['size']}"
        entry["route"] = "restore_dir" if usable else None
        entry["source"] = str(path) if usable else None
        if not usable:
            entry["status"] = UNRECOVERABLE
            entry["action"] = f"re-log the artifact from its producer (runbook step 4); {tried}"
        elif not repair or dry_run:
            entry["status"] = RECOVERABLE
            entry["action"] = f"would upload {path}"
        else:
            try:
                upload_file(self.s3, str(path), bucket, key)
                entry["status"], entry["action"] = REPAIRED, f"uploaded {path}"
            except Exception as exc:  # noqa: BLE001 - reported per entry
                entry["status"] = FAILED
                entry["action"] = f"upload of {path} failed ({type(exc).__name__}: {exc}); rerun to retry"
        return entry


def _safe_uri(uri: str) -> str:
    """A tracking URI without a password (``https://user:pass@host`` → ``https://user:***@host``)."""
    return redact_urls(uri)


def check_mlflow(target, client, *, tracking_uri=None, state_store=None, repair=False, dry_run=False, workers=32):
    """Check one ``kind: mlflow`` target; see the module docstring."""
    return MlflowCheck(target, client, tracking_uri=tracking_uri, state_store=state_store, workers=workers).run(
        repair=repair, dry_run=dry_run
    )

"""Promote a staged dataset version to primary, clean up a staged version, create pools.

Shared by ``python -m greenlight datasets …`` and the manual DAGs ``dataset_version_promotion`` /
``dataset_version_cleanup``; the caller passes the S3 client factory and the Airflow REST client.

The config file is rewritten with ruamel.yaml's round-trip mode (comments and key order kept),
validated in full before it replaces the old file (temp file in the same folder + ``os.replace``),
so a promotion or cleanup never leaves an invalid or half-written config behind.

The dataset's ``current`` pointer is the promotion DAG's atomic pointer
(:func:`greenlight.promotion.gates.publish_pointer`: one PUT, the replaced pointer kept under ``previous``),
named ``current/datasets_<dataset_id>.json`` under the config's ``pointer_root``.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML

from greenlight.datasets import naming
from greenlight.datasets.config import config_path, load_config, parse_config
from greenlight.datasets.jobs import run_job
from greenlight.datasets.model import DatasetConfigError
from greenlight.errors import ConfigError, GreenlightError, RefusedError
from greenlight.promotion.gates import pointer_path, publish_pointer
from greenlight.storage.manifests import ManifestStore

log = logging.getLogger("greenlight.datasets")

PROMOTION_KIND = "greenlight.dataset-promotion/v1"


@dataclass(frozen=True)
class PointerTarget:
    """What :mod:`greenlight.promotion.gates`' pointer functions need from a prefix: ``source`` (here the
    store path the pointer points at) and ``destination`` (names the pointer file)."""

    source: str
    destination: str


def pointer_target(dataset_id: str, store_path: str = "") -> PointerTarget:
    # Dataset ids are file-name safe (``DatasetId``), so the pointer keeps its documented readable
    # name ``current/datasets_<dataset_id>.json`` with no hash suffix.
    return PointerTarget(source=store_path, destination=f"datasets_{dataset_id}")


def pointer_store(config, client_factory: Callable[[], Any]):
    root = config.pointer_root
    return ManifestStore(root, client_factory() if root.startswith("s3://") else None)


def read_current(config, dataset_id: str, client_factory: Callable[[], Any]) -> dict[str, Any] | None:
    return pointer_store(config, client_factory).read(pointer_path(pointer_target(dataset_id)))


# ------------------------------------------------------------------------------ YAML round trip


def _yaml():
    yaml = YAML()  # round-trip: comments, order and quoting kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def read_document(path: Path):
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"datasets config {path} does not exist") from exc
    return _yaml().load(text)


def write_document(path: Path, doc, *, require_valid: bool = True) -> list[str]:
    """Validate ``doc`` as a datasets config, then replace ``path`` atomically (temp + rename).

    With ``require_valid=False`` a config that still has problems is written anyway (cleanup
    removing one bad entry must not be blocked by another); the problems are returned."""
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    text = buf.getvalue()
    problems: list[str] = []
    try:
        reparsed = pyyaml.safe_load(text)
    except pyyaml.YAMLError as exc:
        raise GreenlightError(
            f"{path}: the rewritten config would not be valid YAML ({exc}); nothing was written"
        ) from exc
    try:
        parse_config(reparsed, path=str(path), base_dir=path.resolve().parent)
    except DatasetConfigError as exc:
        if require_valid:
            raise
        problems = [str(p) for p in exc.problems]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return problems


def _find_dataset(doc, dataset_id: str, path: Path):
    for index, entry in enumerate(doc.get("datasets") or []):
        if isinstance(entry, dict) and str(entry.get("id")) == dataset_id:
            return index, entry
    known = ", ".join(str(e.get("id")) for e in doc.get("datasets") or [] if isinstance(e, dict)) or "none"
    raise ConfigError(
        f"{path}: dataset {dataset_id!r}: no such dataset in the config (configured: {known}) [rule: known-dataset]"
    )


_MOVED_WITH_VERSION = ("template_version", "template", "image", "code_ref")


def _set_staged(entry, staged) -> None:
    """An empty list is dropped (``staged`` defaults to none): ruamel cannot place ``[]`` after
    the comments that belonged to the removed entries."""
    if staged:
        entry["staged"] = staged
    else:
        entry.pop("staged", None)


# ------------------------------------------------------------------------------ promote


def promote(
    dataset_id: str,
    version: str,
    *,
    path: str | os.PathLike | None = None,
    client_factory: Callable[[], Any],
    api=None,
    run_id: str | None = None,
    keep_previous: bool = False,
    run_validate: bool = True,
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Make staged ``version`` the primary of ``dataset_id``.

    1. the staged version's validate job runs against its store (a failure stops here, exit 1);
    2. the dataset's ``current`` pointer moves to the staged store path (previous pointer kept);
    3. the config's ``primary`` becomes ``version``; the staged entry is removed (with
       ``keep_previous`` the old primary becomes a staged entry, a legacy version that keeps
       updating); the entry's template/image/code_ref move with it;
    4. with an Airflow API client, the staged DAGs are paused and deleted (seed: "clean up the
       now-redundant staging resources"); the version's pool stays (the new primary runs in it);
       store paths are never deleted.
    """
    resolved = config_path(path)
    config = load_config(resolved)
    dataset = config.dataset(dataset_id)
    spec = dataset.version(version)
    if not spec.staged:
        raise RefusedError(
            f"dataset {dataset_id} v{version}", f"{version} is already the primary version; nothing to promote"
        )
    previous = dataset.primary
    run_id = run_id or "promote__" + datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")

    validated: dict[str, Any] = {"result": "validated by the caller"}
    if run_validate:
        say(f"1. validating staged {dataset_id} v{version} at {spec.store_path}")
        validated = run_job(
            config,
            dataset_id,
            "validate",
            role=naming.STAGED,
            version=version,
            run_id=run_id,
            s3_client_factory=client_factory,
        )
        say(f"   valid: {validated['result']}")

    store = pointer_store(config, client_factory)
    target = pointer_target(dataset_id, spec.store_path)
    current = store.read(pointer_path(target))
    if current and current.get("store_path") == spec.store_path and current.get("run_id"):
        run_id = current["run_id"]  # a rerun after a partial promotion keeps the first pointer's "previous"
    pointer_uri = publish_pointer(
        store,
        target,
        run_id=run_id,
        dataset_id=dataset_id,
        version=version,
        store_path=spec.store_path,
        previous_primary={"version": previous.version, "store_path": previous.store_path},
    )
    say(f"2. current pointer {pointer_uri} -> {spec.store_path} (was {previous.store_path}; kept for rollback)")

    doc = read_document(resolved)
    _, entry = _find_dataset(doc, dataset_id, resolved)
    staged = entry.get("staged") or []
    index = next(i for i, st in enumerate(staged) if str(st.get("version")) == version)
    staged_entry = staged[index]
    old_primary = {"version": str(entry["primary"])}
    for key in _MOVED_WITH_VERSION:
        position = list(entry).index(key) if key in entry else list(entry).index("primary") + 1
        if key in entry:
            old_primary[key] = entry.pop(key)
        if key in staged_entry:
            entry.insert(position, key, staged_entry[key])  # where the old value was (or after primary)
    entry["primary"] = version
    del staged[index]
    if keep_previous:
        staged.append(old_primary)
    _set_staged(entry, staged)
    write_document(resolved, doc)
    legacy = f"; {previous.version} kept as a staged (legacy) version" if keep_previous else ""
    say(f"3. {resolved}: primary {previous.version} -> {version}{legacy}")

    removed = _remove_staged_dags(dataset_id, version, api, say=say, dry_run=False, delete_pool=False)
    return {
        "kind": PROMOTION_KIND,
        "dataset_id": dataset_id,
        "version": version,
        "previous_version": previous.version,
        "store_path": spec.store_path,
        "previous_store_path": previous.store_path,
        "pointer": pointer_uri,
        "run_id": run_id,
        "config": str(resolved),
        "kept_previous": keep_previous,
        "validated": validated["result"],
        **removed,
    }


def _remove_staged_dags(
    dataset_id: str, version: str, api, *, say, dry_run: bool, delete_pool: bool = True
) -> dict[str, Any]:
    """Pause and delete the staged DAGs of ``version``; the pool too unless ``delete_pool`` is
    False (after a promotion the version's pool is the new primary's: pools are per version)."""
    dag_ids = [naming.dag_id(dataset_id, version, job, staged=True) for job in naming.JOBS]
    pool = naming.pool_name(dataset_id, version)
    if api is None:
        say(
            "   no Airflow API connection: staged DAG metadata left in Airflow; remove it with "
            + "; ".join(f"airflow dags delete -y {d}" for d in dag_ids)
            + (f"; airflow pools delete {pool}" if delete_pool else "")
        )
        return {"paused": [], "deleted_dags": [], "deleted_pool": None, "dag_metadata_left": dag_ids}
    paused, deleted = [], []
    for dag_id in dag_ids:
        if api.get_dag(dag_id) is None:
            say(f"   {dag_id}: not in Airflow (already deleted or never parsed)")
            continue
        if dry_run:
            say(f"   would pause and delete {dag_id}")
            continue
        api.set_paused(dag_id, True)
        paused.append(dag_id)
        if api.delete_dag(dag_id):
            deleted.append(dag_id)
        say(f"   {dag_id}: paused and deleted through the REST API")
    pool_deleted = None
    if not delete_pool:
        say(f"   pool {pool}: kept (the promoted primary runs in it)")
    elif dry_run:
        say(f"   would delete pool {pool}")
    else:
        pool_deleted = pool if api.delete_pool(pool) else None
        if pool_deleted:
            say(f"   pool {pool}: deleted")
    return {"paused": paused, "deleted_dags": deleted, "deleted_pool": pool_deleted, "dag_metadata_left": []}


# ------------------------------------------------------------------------------ cleanup


def _raw_store_path(doc, entry, version: str) -> str | None:
    """The staged version's store path from the raw document (works on a config with problems)."""
    try:
        template = str(entry.get("store") or doc.get("store") or "{base}/{dataset_id}/v{version}.{ext}")
        base = str(entry.get("base") or doc.get("base")).rstrip("/")
        return template.format(
            base=base, dataset_id=str(entry["id"]), version=version, ext=str(entry.get("ext", "zarr"))
        )
    except (KeyError, ValueError, IndexError):
        return None


def cleanup(
    dataset_id: str,
    version: str,
    *,
    path: str | os.PathLike | None = None,
    api=None,
    dry_run: bool = False,
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Remove staged ``version`` of ``dataset_id``: pause its DAGs, drop its config entry, delete
    its DAGs' metadata and pool, and list what is left on purpose (store path, branch).

    Refuses the primary version (exit 2). Never deletes a store path. Works on a config that has
    problems (that is how a bad staged entry is removed) and is idempotent: a rerun finds nothing
    left to remove and prints the same leftovers.
    """
    resolved = config_path(path)
    doc = read_document(resolved)
    _, entry = _find_dataset(doc, dataset_id, resolved)
    if str(entry.get("primary")) == version:
        raise RefusedError(
            f"dataset {dataset_id} v{version}",
            "this is the primary version: cleanup only removes staged versions (promote another version first)",
        )
    staged = entry.get("staged") or []
    index = next((i for i, st in enumerate(staged) if isinstance(st, dict) and str(st.get("version")) == version), None)
    store_path = _raw_store_path(doc, entry, version)
    verb = "would remove" if dry_run else "removing"
    say(f"cleanup of staged {dataset_id} v{version}{' (dry run: nothing changes)' if dry_run else ''}")

    removed = {"paused": [], "deleted_dags": [], "deleted_pool": None, "dag_metadata_left": []}
    if api is not None and not dry_run:
        for dag_id in (naming.dag_id(dataset_id, version, job, staged=True) for job in naming.JOBS):
            if api.get_dag(dag_id) is not None:
                api.set_paused(dag_id, True)  # first, so no new run starts while the entry goes
                removed["paused"].append(dag_id)
                say(f"   {dag_id}: paused")

    remaining: list[str] = []
    if index is None:
        say(f"   config: no staged entry {version} for {dataset_id} in {resolved} (already removed)")
    else:
        say(f"   config: {verb} {entry.get('id')}.staged[{index}] (version {version}) from {resolved}")
        if not dry_run:
            del staged[index]
            _set_staged(entry, staged)
            remaining = write_document(resolved, doc, require_valid=False)
            for problem in remaining:
                say(f"   the config still has a problem (not caused by this entry): {problem}")

    if api is not None:
        deleted = _remove_staged_dags(dataset_id, version, api, say=say, dry_run=dry_run)
        removed["deleted_dags"] = deleted["deleted_dags"]
        removed["deleted_pool"] = deleted["deleted_pool"]
    else:
        removed = {**removed, **_remove_staged_dags(dataset_id, version, None, say=say, dry_run=dry_run)}

    left = [p for p in (store_path,) if p]
    branch = naming.branch(dataset_id, version)
    say("Not deleted (clean up manually when ready):")
    for item in left:
        say(f"  {item}")
    say(f"  git branch {branch} (team CI: git push origin --delete {branch})")
    return {
        "dataset_id": dataset_id,
        "version": version,
        "dry_run": dry_run,
        "config": str(resolved),
        "config_entry_removed": index is not None and not dry_run,
        "config_problems": remaining,
        "not_deleted": left,
        "branch": branch,
        **removed,
    }


# ------------------------------------------------------------------------------ pools


def pools(config) -> list[dict[str, Any]]:
    """One pool per dataset version: name, slots, description."""
    return [
        {
            "name": spec.pool,
            "slots": ds.pool_slots,
            "description": f"greenlight dataset {ds.id} v{spec.version} ({spec.role})",
        }
        for ds in config.datasets
        for spec in ds.versions
    ]


def ensure_pools(config, api) -> dict[str, str]:
    return {p["name"]: api.ensure_pool(p["name"], p["slots"], p["description"]) for p in pools(config)}

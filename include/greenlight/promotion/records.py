"""The records a promotion run keeps next to prod, and where they live under ``manifest_uri``.

- the **QA snapshot** (``promotions/<run>/snapshots/<prefix>.json``): every QA object's key, size
  and ETag as this run planned it; the gates validate it and ``promote`` copies nothing else
  (:func:`snapshot_doc`, :func:`snapshot_objects`, :func:`snapshot_changes`);
- the per-prefix **promotion manifest** (``promotions/<run>/<prefix>.json``): the "before" state of
  every key about to change, written before prod changes, and what each action did
  (:func:`manifest_doc`, :func:`finish_manifest_doc`);
- the **run index** (``promotions/<run>/index.json``): one row per prefix manifest, the handle a
  rollback is given, updated by compare-and-write so concurrent writers lose nothing
  (:class:`RunIndex`).

Documents only: which S3 calls record them, and when, is :mod:`greenlight.promotion.engine`'s.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from greenlight.errors import ManifestError
from greenlight.promotion.config import PrefixConfig
from greenlight.promotion.plan import PrefixPlan, PrefixResult
from greenlight.storage.manifests import ManifestStore, safe_name, utcnow
from greenlight.storage.s3 import S3Uri, normalize_etag

MANIFEST_KIND = "greenlight.promotion/v1"
SNAPSHOT_KIND = "greenlight.qa-snapshot/v1"
INDEX_KIND = "greenlight.promotion-run/v1"
#: Seconds a run-index update keeps retrying while other writers of the same index win the race.
INDEX_WAIT = 120.0
#: What the run index keeps of each prefix's result.
INDEX_ROW_KEYS = (
    "prefix",
    "destination",
    "manifest",
    "copied",
    "deleted",
    "unchanged",
    "objects_seen",
    "bytes_copied",
    "status",
    "errors",
)


def _dest_file(prefix: PrefixConfig) -> str:
    dest = prefix.destination
    return safe_name(dest.bucket + "/" + dest.prefix)


def snapshot_path(run_id: str, prefix: PrefixConfig) -> str:
    return f"promotions/{safe_name(run_id)}/snapshots/{_dest_file(prefix)}.json"


def manifest_path(run_id: str, prefix: PrefixConfig) -> str:
    return f"promotions/{safe_name(run_id)}/{_dest_file(prefix)}.json"


def index_path(run_id: str) -> str:
    return f"promotions/{safe_name(run_id)}/index.json"


# ------------------------------------------------------------------------------ the QA snapshot
def snapshot_doc(plan: PrefixPlan, run_id: str) -> dict[str, Any]:
    """The QA listing (key, size, ETag) this run plans and gates: what ``promote`` may copy."""
    return {
        "kind": SNAPSHOT_KIND,
        "run_id": run_id,
        "source": str(plan.prefix.source),
        "destination": str(plan.prefix.destination),
        "taken_at": utcnow(),
        "objects": {rel: list(state) for rel, state in sorted(plan.snapshot.items())},
    }


def snapshot_objects(saved: dict[str, Any] | None) -> dict[str, tuple[int, str]] | None:
    """rel -> (size, ETag) of a saved snapshot document (None for no document)."""
    if saved is None:
        return None
    return {k: (int(v[0]), normalize_etag(v[1])) for k, v in saved.get("objects", {}).items()}


def snapshot_changes(
    validated: dict[str, tuple[int, str]], observed: dict[str, tuple[int, str]], source: S3Uri
) -> list[str]:
    """How ``observed`` (a new QA listing) differs from the ``validated`` snapshot: one phrase each
    for changed, added and removed objects, naming up to 20 of them (empty: the same)."""
    changed = sorted(k for k in validated.keys() & observed.keys() if validated[k] != observed[k])
    added = sorted(observed.keys() - validated.keys())
    removed = sorted(validated.keys() - observed.keys())
    parts = []
    for what, keys in (("changed", changed), ("added", added), ("removed", removed)):
        if keys:
            shown = ", ".join(f"s3://{source.bucket}/{source.join(k)}" for k in keys[:20])
            parts.append(f"{len(keys)} {what}: {shown}" + (" …" if len(keys) > 20 else ""))
    return parts


# ------------------------------------------------------------------------------ the prefix manifest
def manifest_doc(
    plan: PrefixPlan,
    run_id: str,
    befores: dict[str, dict[str, Any] | None],
    previous: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``pending`` manifest of one prefix: every copy and delete with the destination's state
    before it (``befores``: key -> VersionId/ETag/size, None for absent). A rerun of the same run
    merges into its ``previous`` manifest and keeps the first attempt's "before" of each key, the
    state a rollback returns to. ``record`` (e.g. the contract passed) is kept at the top level."""
    p = plan.prefix
    actions: dict[str, dict[str, Any]] = {}
    for entry in (previous or {}).get("actions", ()):
        actions[entry["key"]] = entry

    def entry_for(key: str) -> dict[str, Any]:
        entry = actions.get(key)
        if entry is None:
            entry = actions[key] = {"key": key, "before": befores.get(key)}
        return entry

    for src, _dst in plan.copies:
        entry_for(p.destination.join(src.rel)).update(
            action="copy",
            source={"key": p.source.join(src.rel), "etag": src.etag, "size": src.size, "version_id": None},
            done=False,
        )
    for dst in plan.deletes:
        entry_for(p.destination.join(dst.rel)).update(action="delete", source=None, done=False)
    return {
        "kind": MANIFEST_KIND,
        "run_id": run_id,
        "source": str(p.source),
        "destination": str(p.destination),
        "bucket": p.destination.bucket,
        "status": "pending",
        "started_at": (previous or {}).get("started_at") or utcnow(),
        "updated_at": utcnow(),
        "attempts": int((previous or {}).get("attempts", 0)) + 1,
        "plan": plan.summary(),
        "actions": sorted(actions.values(), key=lambda e: e["key"]),
        **(record or {}),
    }


def finish_manifest_doc(doc: dict[str, Any], status: str, result: PrefixResult) -> dict[str, Any]:
    """``doc`` (in place) with the prefix's final status, its stats and errors."""
    doc["status"] = status
    doc["updated_at"] = utcnow()
    doc["stats"] = {k: v for k, v in result.as_dict().items() if k not in ("manifest", "errors")}
    doc["errors"] = result.errors
    return doc


# ------------------------------------------------------------------------------ the run index
def merged_index(
    previous: dict[str, Any], results: list[dict[str, Any]], run_id: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """The run index ``previous`` updated with ``results`` (one row per prefix, or per shard of a
    sharded prefix); ``extra`` adds top-level fields (``status`` is the run's unless a row failed)."""
    extra = dict(extra)

    def part(r: dict[str, Any]) -> str:  # a sharded prefix has one row per shard
        shard = r.get("shard")
        return r["prefix"] + (f"#{int(shard['index']):06d}" if shard else "")

    parts = {part(r): r for r in previous.get("prefixes", ())}
    for r in results:
        row = {k: r.get(k) for k in INDEX_ROW_KEYS}
        row["status"] = r.get("status") or "complete"
        row["errors"] = r.get("errors") or []
        if r.get("shard"):
            row["shard"] = r["shard"]
        parts[part(r)] = row
    status = extra.pop("status", None)
    if any(r.get("status") == "failed" for r in parts.values()):
        status = "failed"
    return {
        **{k: v for k, v in previous.items() if k not in ("prefixes", "updated_at")},
        "kind": INDEX_KIND,
        "run_id": run_id,
        "updated_at": utcnow(),
        "prefixes": [parts[k] for k in sorted(parts)],
        "status": status or previous.get("status") or "complete",
        **extra,
    }


class RunIndex:
    """Updates of the run indexes in one manifest store.

    Several writers may update one run's index at once (mapped tasks of a DAG run, the prefixes of
    a CLI run): each update merges into the version it read and is written only if that version is
    still current (:meth:`ManifestStore.write_if`, a conditional PUT); a writer that lost the race
    reads the new version and merges again, for up to :data:`INDEX_WAIT` seconds. The version this
    object last wrote is kept, so a further update from this process usually costs one PUT."""

    def __init__(self, store: ManifestStore):
        self.store = store
        self._lock = threading.Lock()  # one update at a time here: keeps the known version current
        self._versions: dict[str, tuple[dict[str, Any], str]] = {}  # rel -> (doc, ETag) last written

    def update(self, run_id: str, results: list[dict[str, Any]], **extra: Any) -> str:
        rel = index_path(run_id)
        deadline = time.monotonic() + INDEX_WAIT
        with self._lock:
            known = self._versions.get(rel)
            attempt = 0
            while True:
                attempt += 1
                if known is None:
                    known = self.store.read_tagged(rel) or ({}, None)
                previous, etag = known
                doc = merged_index(previous, results, run_id, extra)
                written = self.store.write_if(rel, doc, etag=etag)
                if written is not None:
                    self._versions[rel] = (doc, written)
                    return self.store.uri(rel)
                known = None  # another writer updated it first: read theirs and merge again
                if time.monotonic() >= deadline:
                    raise ManifestError(
                        f"could not update run index {self.store.uri(rel)}: other writers changed it "
                        f"{attempt} times in {INDEX_WAIT:.0f} s"
                    )
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))

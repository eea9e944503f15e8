"""Exact rollback of a promotion from its manifest, only within greenlight's own domain.

Every key a promotion changed goes back to its recorded pre-promotion version: a key that existed
is restored by copying that VersionId over the current object (UploadPartCopy from the VersionId
above 5 GiB); a key that did not exist is deleted (a delete marker in the versioned bucket). Keys
the promotion did not touch are left alone. Refusals (exit 2) happen before anything changes:

- **Domain**: the manifest must live under the configured ``manifest_uri``, and every key it names
  under a configured destination prefix in a destination-rule (``prod-``) bucket.
- **Missing versions**: every recorded version must still exist (a lifecycle rule may have
  expired it), unless ``allow_partial``.
- **Later work**: each key must still be what the rolled-back promotion left (its ``after``). A
  key changed since (a later promotion, a hand edit) is named with the run that changed it, and
  the rollback is refused unless ``force``. A key the promotion never wrote (its copy failed or was
  never attempted: no ``after``, and prod does not hold what it would have copied) is left alone.

Writers hold the lease of each prod prefix (:mod:`greenlight.storage.lease`), so a rollback never
runs while a promotion of the same prefix does. A rollback writes its own manifest in the promotion
format (the state of each key before the rollback), so it can itself be rolled back; a retried
rollback with the same run id merges into that manifest and keeps the first recorded "before".
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from greenlight.errors import (
    GreenlightError,
    ManifestError,
    ManifestInvalidError,
    ManifestNotFoundError,
    RefusedError,
    VerificationError,
)
from greenlight.promotion.config import PromotionConfig, load_config
from greenlight.promotion.gates import pointer_manifests, stored_pointer
from greenlight.storage.lease import holding
from greenlight.storage.manifests import ManifestStore, read_manifest_uri, safe_name, utcnow
from greenlight.storage.s3 import S3Uri, error_code, normalize_etag, object_state, parse_s3_uri

log = logging.getLogger("greenlight.promotion.rollback")
KIND = "greenlight.promotion/v1"
RUN_KIND = "greenlight.promotion-run/v1"
#: Above this size a restore is a multipart UploadPartCopy (CopyObject's limit is 5 GiB).
MAX_SINGLE_COPY = 5 * 1024**3
PART_SIZE = 512 * 1024**2
#: The name of a sharded prefix's manifest part (``shards.part_path``): ``….shard-0002-of-0004.json``.
SHARD_PART = re.compile(r"\.shard-(\d{4,})-of-(\d{4,})\.json$")


def _check_prefix_manifest(loc: str, doc: dict[str, Any]) -> None:
    """A prefix manifest must have the fields a rollback relies on (bad input: exit 2)."""
    if doc.get("kind") != KIND:
        raise ManifestInvalidError(f"{loc} is not a greenlight promotion manifest (kind={doc.get('kind')!r})")
    for field in ("bucket", "destination"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise ManifestInvalidError(f"{loc}: field {field!r} is missing or not a string")
    actions = doc.get("actions", [])
    if not isinstance(actions, list) or not all(
        isinstance(a, dict) and isinstance(a.get("key"), str) and a["key"] for a in actions
    ):
        raise ManifestInvalidError(f"{loc}: 'actions' must be a list of objects with a 'key'")


def shard_label(manifest: dict[str, Any]) -> str:
    """``shard 3/4 of s3://prod-…/x/`` for a sharded prefix's manifest part, else ''."""
    shard = manifest.get("shard")
    if not isinstance(shard, dict) or int(shard.get("count") or 1) <= 1:
        return ""
    return f"shard {int(shard['index']) + 1}/{int(shard['count'])} of {manifest.get('destination')}"


def shard_parts(loc: str, manifest: dict[str, Any], client) -> list[tuple[str, dict[str, Any]]]:
    """A manifest part of a sharded prefix -> every part of that prefix in the same run, found by
    name (a shard that changed nothing has none); any other manifest -> itself.

    So a rollback given one part (or an older current pointer, which named shard 1's part only)
    still covers, and attributes, every shard."""
    match = SHARD_PART.search(loc)
    shard = manifest.get("shard")
    if match is None or not isinstance(shard, dict) or int(shard.get("count") or 1) <= 1:
        return [(loc, manifest)]
    count = int(shard["count"])
    out = []
    for number in range(1, count + 1):
        part = f"{loc[: match.start()]}.shard-{number:04d}-of-{count:04d}.json"
        if part == loc:
            out.append((loc, manifest))
            continue
        try:
            doc = read_manifest_uri(part, client)
        except ManifestNotFoundError:
            continue
        _check_prefix_manifest(part, doc)
        if doc["destination"] == manifest["destination"] and doc.get("run_id") == manifest.get("run_id"):
            out.append((part, doc))
    return out


def load_prefix_manifests(uri: str, client) -> list[tuple[str, dict[str, Any]]]:
    """A run index or a single prefix manifest -> [(location, manifest)] (one manifest part of a
    sharded prefix -> every part of it: see :func:`shard_parts`)."""
    doc = read_manifest_uri(uri, client)
    if doc.get("kind") == RUN_KIND:
        rows = doc.get("prefixes", ())
        if not isinstance(rows, list):
            raise ManifestInvalidError(f"{uri}: 'prefixes' must be a list")
        out = []
        for row in rows:
            if isinstance(row, dict) and row.get("manifest"):
                manifest = read_manifest_uri(row["manifest"], client)
                _check_prefix_manifest(row["manifest"], manifest)
                out.append((row["manifest"], manifest))
        return out
    _check_prefix_manifest(uri, doc)
    parts = shard_parts(uri, doc, client)
    if len(parts) > 1:
        log.info("%s is one part of a sharded prefix: rolling back all %d parts of it", uri, len(parts))
    return parts


def check_domain(uri: str, manifests: list[tuple[str, dict[str, Any]]], config: PromotionConfig) -> None:
    """Refuse (exit 2) a manifest outside ``manifest_uri`` or naming a key outside greenlight's prod
    prefixes: a JSON file dropped in some bucket must not be able to delete prod keys."""
    root = config.manifest_uri
    outside: list[str] = []
    for loc in [uri] + [loc for loc, _ in manifests]:
        if not loc.startswith("s3://") or root is None:
            outside.append(f"manifest {loc} (not under manifest_uri {root})")
            continue
        where = parse_s3_uri(loc, what="manifest", directory=False)
        if not root.contains(where):
            outside.append(f"manifest {loc} (not under manifest_uri {root})")
    destinations = [p.destination for p in config.prefixes]
    rule = config.rule.destination_prefix
    for loc, manifest in manifests:
        bucket = manifest["bucket"]
        if not bucket.startswith(rule):
            outside.append(f"bucket {bucket!r} of {loc} (not a {rule!r} bucket)")
            continue
        keys = [a["key"] for a in manifest.get("actions", ())]
        stray = [k for k in keys if not any(d.contains(S3Uri(bucket, k)) for d in destinations)]
        if stray:
            shown = ", ".join(f"s3://{bucket}/{k}" for k in stray[:10])
            more = f" (+{len(stray) - 10} more)" if len(stray) > 10 else ""
            outside.append(f"{len(stray)} key(s) of {loc} outside every configured destination prefix: {shown}{more}")
    if outside:
        raise RefusedError(
            uri,
            "rollback only touches greenlight's own prod prefixes; nothing was changed. Outside: " + "; ".join(outside),
        )


def _version_exists(client, bucket: str, key: str, version_id: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        return True
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "NotFound", "400", "InvalidArgument"):
            return False
        raise


def _same(state: dict[str, Any] | None, other: dict[str, Any] | None) -> bool:
    """Two recorded object states are the same version (or, unversioned, the same content)."""
    if state is None or other is None:
        return state is None and other is None
    if state.get("version_id") and other.get("version_id"):
        return state["version_id"] == other["version_id"]
    return normalize_etag(state.get("etag")) == normalize_etag(other.get("etag")) and state.get("size") == other.get(
        "size"
    )


def _same_content(state: dict[str, Any] | None, other: dict[str, Any] | None) -> bool:
    if state is None or other is None:
        return state is None and other is None
    return normalize_etag(state.get("etag")) == normalize_etag(other.get("etag")) and int(
        state.get("size") or 0
    ) == int(other.get("size") or 0)


def _decide(entry: dict[str, Any], current: dict[str, Any] | None) -> str:
    """What the rollback does with one key: ``none``, ``restore``, ``delete``, ``skip`` (never written
    by this promotion) or ``conflict`` (changed since the promotion)."""
    before = entry.get("before")
    if before is None and current is None:
        return "none"
    if before is not None and current is not None and (_same(current, before) or _same_content(current, before)):
        return "none"  # already what it was (e.g. a retried rollback)
    undo = "delete" if before is None else "restore"
    after = entry.get("after")
    if after:
        if "delete_marker_version_id" in after:
            return undo if current is None else "conflict"
        return undo if _same(current, after) else "conflict"
    # No "after": the promotion did not record writing this key (its copy failed, the deletes never
    # ran, or it crashed before recording). Undo only what prod shows it did.
    source = entry.get("source")
    if entry.get("action") == "copy" and source and current is not None and _same_content(current, source):
        return undo
    if entry.get("action") == "delete" and current is None:
        return undo
    return "skip"


def _pointer_actions(store: ManifestStore, destination: str) -> tuple[str | None, dict[str, tuple[dict, str]]]:
    """The current pointer's run and every key its manifests record (key -> (action, shard label)),
    over all shards of a sharded prefix."""
    pointer = stored_pointer(store, destination) or {}
    named = pointer_manifests(pointer)
    actions: dict[str, tuple[dict, str]] = {}
    for loc in named:
        try:
            doc = read_manifest_uri(loc, store.client)
            # A pointer naming one part only was written before pointers named every part.
            parts = shard_parts(loc, doc, store.client) if len(named) == 1 else [(loc, doc)]
        except GreenlightError:
            continue
        for _, part in parts:
            label = shard_label(part)
            for action in part.get("actions", ()):
                if isinstance(action, dict) and action.get("key"):
                    actions[action["key"]] = (action, label)
    return pointer.get("run_id"), actions


def _who_changed(store: ManifestStore | None, destination: str, key: str, current: dict[str, Any] | None, cache):
    """The run that made ``key`` what it is now (and its shard), when greenlight's current pointer knows it."""
    if current is None:
        return "deleted since (not by greenlight's current promotion)"
    if store is not None:
        if destination not in cache:
            cache[destination] = _pointer_actions(store, destination)
        run_id, actions = cache[destination]
        entry, label = actions.get(key, (None, ""))
        if run_id and entry and _same(current, entry.get("after")):
            return f"by promotion run {run_id!r}" + (f" ({label})" if label else "")
    return f"by something else (version {current.get('version_id')}: a hand edit or a run greenlight has no pointer to)"


def _restore_multipart(client, step: dict[str, Any]) -> None:
    """Restore a version above the CopyObject limit with UploadPartCopy from its VersionId."""
    bucket, key, before = step["bucket"], step["key"], step["before"]
    source = {"Bucket": bucket, "Key": key, "VersionId": before["version_id"]}
    head = client.head_object(Bucket=bucket, Key=key, VersionId=before["version_id"])
    size = int(head["ContentLength"])
    extra = {
        k: head[k]
        for k in ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")
        if head.get(k)
    }
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=head.get("Metadata", {}), **extra)[
        "UploadId"
    ]
    try:
        parts = []
        for number, first in enumerate(range(0, max(size, 1), PART_SIZE), start=1):
            last = min(first + PART_SIZE, size) - 1
            part = client.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={first}-{max(last, 0)}",
            )
            parts.append({"ETag": part["CopyPartResult"]["ETag"], "PartNumber": number})
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.warning("could not abort multipart upload %s for %s", upload_id, key)
        raise


def rollback(
    uri: str,
    client,
    *,
    config: PromotionConfig | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    allow_partial: bool = False,
    force: bool = False,
    run_id: str | None = None,
    workers: int = 32,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Restore every key of the promotion at ``uri`` to its recorded pre-promotion state.

    ``config`` (default: the promotion config in force) defines greenlight's domain and where
    rollback manifests and leases live. ``force`` restores keys changed since the promotion too.
    ``wait`` is how long to wait for another writer's lease on the same prefix (0: refuse at once).
    """
    if config is None:
        config = load_config()
    started = time.monotonic()
    run_id = run_id or "rollback__" + time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    manifests = load_prefix_manifests(uri, client)
    if only:
        wanted = {parse_s3_uri(o).prefix if o.startswith("s3://") else o for o in only}
        manifests = [
            (loc, m)
            for loc, m in manifests
            if m.get("source") in only or m["destination"] in only or parse_s3_uri(m["destination"]).prefix in wanted
        ]
        if not manifests:
            raise RefusedError(str(only), f"none of these prefixes is in the manifest {uri}")
    check_domain(uri, manifests, config)
    store = ManifestStore(config.manifest_uri, client) if config.manifest_uri else None
    if dry_run:
        return _run(uri, client, manifests, store, dry_run=True, allow_partial=allow_partial, force=force,
                    run_id=run_id, workers=workers, started=started)  # fmt: skip
    destinations = [m["destination"] for _, m in manifests]
    with holding(client, config.manifest_uri, destinations, run_id=run_id, operation="rollback", wait=wait) as leases:
        summary = _run(uri, client, manifests, store, dry_run=False, allow_partial=allow_partial, force=force,
                       run_id=run_id, workers=workers, started=started, leases=leases)  # fmt: skip
        summary["leases"] = leases.report()
        return summary


def _run(uri, client, manifests, store, *, dry_run, allow_partial, force, run_id, workers, started, leases=None):
    # 1. Work out what each key needs, and refuse before any change if a version is gone or a key
    #    was changed since the promotion.
    steps: list[dict[str, Any]] = []
    missing: list[str] = []
    conflicts: list[str] = []
    skipped: list[str] = []
    who_cache: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for loc, manifest in manifests:
            bucket = manifest["bucket"]
            entries = manifest.get("actions", [])
            currents = list(pool.map(lambda e, b=bucket: object_state(client, b, e["key"]), entries))
            exists = list(
                pool.map(
                    lambda e, b=bucket: (
                        _version_exists(client, b, e["key"], e["before"]["version_id"])
                        if e.get("before") and e["before"].get("version_id")
                        else True
                    ),
                    entries,
                )
            )
            for entry, current, ok in zip(entries, currents, exists, strict=True):
                key, before = entry["key"], entry.get("before")
                action = _decide(entry, current)
                if action == "conflict":
                    who = _who_changed(store, manifest["destination"], key, current, who_cache)
                    part = f" ({shard_label(manifest)})" if shard_label(manifest) else ""
                    conflicts.append(f"s3://{bucket}/{key}{part} changed since run {manifest.get('run_id')!r}: {who}")
                    if not force:
                        continue
                    action = "delete" if before is None else "restore"
                if action == "skip":
                    skipped.append(f"s3://{bucket}/{key}")
                    log.info("left alone: s3://%s/%s (never written by run %s)", bucket, key, manifest.get("run_id"))
                    continue
                if action == "restore" and not before.get("version_id"):
                    missing.append(f"s3://{bucket}/{key} (no version recorded: bucket was unversioned)")
                    continue
                if action == "restore" and not ok:
                    missing.append(f"s3://{bucket}/{key} (version {before['version_id']} no longer exists)")
                    continue
                steps.append(
                    {"loc": loc, "bucket": bucket, "key": key, "action": action, "before": before, "current": current}
                )
    if conflicts and not force:
        raise RefusedError(
            uri,
            f"{len(conflicts)} key(s) changed after the promotion being rolled back; restoring them would undo "
            "later work, nothing was changed (force to restore them anyway): " + "; ".join(conflicts[:20]),
        )
    if missing and not allow_partial:
        raise RefusedError(
            uri,
            f"{len(missing)} recorded version(s) cannot be restored, nothing was changed "
            f"(allow_partial to restore the rest): " + "; ".join(missing[:20]),
        )

    todo = [s for s in steps if s["action"] != "none"]
    lines = [
        (f"restore: s3://{s['bucket']}/{s['key']} -> version {s['before']['version_id']}")
        if s["action"] == "restore"
        else f"delete: s3://{s['bucket']}/{s['key']} (did not exist before the promotion)"
        for s in todo
    ]
    summary: dict[str, Any] = {
        "run_id": run_id,
        "manifest": uri,
        "dry_run": dry_run,
        "keys": len(steps),
        "restored": 0,
        "deleted": 0,
        "unchanged": len(steps) - len(todo),
        "unrecoverable": missing,
        "left_alone": skipped,
        "forced": conflicts if force else [],
        "plan_lines": lines,
    }
    if dry_run:
        for line in lines:
            log.info("(dry run) %s", line)
        summary["duration_s"] = round(time.monotonic() - started, 3)
        return summary
    if store is None:
        raise ManifestError("a rollback writes its own manifest: the promotion config needs a manifest_uri")

    # 2. Record the rollback's own "before" (so it can be undone), then change prod. A retry of the
    #    same rollback run merges into its manifest and keeps the first recorded "before".
    docs: dict[str, dict[str, Any]] = {}
    rel: dict[str, str] = {}
    for loc, manifest in manifests:
        shard = manifest.get("shard") or {}  # a sharded prefix: one rollback manifest per part
        part = f".shard-{int(shard['index']) + 1:04d}-of-{int(shard['count']):04d}" if shard else ""
        name = safe_name(manifest["destination"].removeprefix("s3://"))
        rel[loc] = f"rollbacks/{safe_name(run_id)}/{name}{part}.json"
        previous = store.read(rel[loc]) or {}
        actions = {a["key"]: a for a in previous.get("actions", ()) if isinstance(a, dict) and a.get("key")}
        for s in todo:
            if s["loc"] != loc:
                continue
            entry = actions.setdefault(s["key"], {"key": s["key"], "before": s["current"]})
            entry.update(
                action="copy" if s["action"] == "restore" else "delete",
                source={"key": s["key"], "version_id": s["before"]["version_id"]} if s["before"] else None,
                done=False,
            )
        docs[loc] = {
            "kind": KIND,
            "run_id": run_id,
            "rollback_of": loc,
            "source": manifest["destination"],
            "destination": manifest["destination"],
            "bucket": manifest["bucket"],
            "status": "pending",
            "started_at": previous.get("started_at") or utcnow(),
            "updated_at": utcnow(),
            "attempts": int(previous.get("attempts", 0)) + 1,
            "actions": sorted(actions.values(), key=lambda e: e["key"]),
        }
        store.write(rel[loc], docs[loc])
    if leases is not None:
        leases.check()

    failures: dict[str, str] = {}
    results: dict[str, dict[str, Any] | None] = {}

    def apply(step: dict[str, Any]) -> None:
        if step["action"] == "restore":
            if int(step["before"].get("size") or 0) > MAX_SINGLE_COPY:
                _restore_multipart(client, step)
            else:
                client.copy_object(
                    Bucket=step["bucket"],
                    Key=step["key"],
                    CopySource={
                        "Bucket": step["bucket"],
                        "Key": step["key"],
                        "VersionId": step["before"]["version_id"],
                    },
                    MetadataDirective="COPY",
                )
        else:
            client.delete_objects(Bucket=step["bucket"], Delete={"Objects": [{"Key": step["key"]}]})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for step, result in zip(todo, pool.map(lambda s: _try(apply, s), todo), strict=True):
            if result:
                failures[step["key"]] = result
                continue
            summary["restored" if step["action"] == "restore" else "deleted"] += 1
            log.info(
                "%s: s3://%s/%s", "restored" if step["action"] == "restore" else "deleted", step["bucket"], step["key"]
            )

    # 3. Verify object by object that prod is back to the recorded state.
    problems = [f"{k}: {v}" for k, v in failures.items()]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        afters = list(pool.map(lambda s: object_state(client, s["bucket"], s["key"]), steps))
    for step, after in zip(steps, afters, strict=True):
        results[step["key"]] = after
        before = step["before"]
        if before is None and after is not None:
            problems.append(f"{step['key']}: still exists")
        elif before is not None and after is None:
            problems.append(f"{step['key']}: missing, expected version {before['version_id']}")
        elif before is not None and int(after["size"]) != int(before.get("size") or 0):
            problems.append(f"{step['key']}: size differs from version {before['version_id']}")
        elif (
            before is not None
            and normalize_etag(after["etag"]) != normalize_etag(before.get("etag"))
            and not (int(before.get("size") or 0) > MAX_SINGLE_COPY and "-" in normalize_etag(after["etag"]))
        ):
            # A multipart restore gets a multipart ETag: its size and the part copies from the
            # recorded VersionId are the proof; anything else must match the recorded ETag.
            problems.append(f"{step['key']}: content differs from version {before['version_id']}")
    for loc, doc in docs.items():
        for action in doc["actions"]:
            key = action["key"]
            if key in results and key not in failures:
                action["done"] = True
                state = results[key]
                action["after"] = (
                    {"delete_marker_version_id": None}
                    if state is None
                    else {"version_id": state["version_id"], "etag": state["etag"], "size": state["size"]}
                )
        doc["status"] = "failed" if problems else "complete"
        doc["updated_at"] = utcnow()
        summary.setdefault("rollback_manifests", []).append(store.write(rel[loc], doc))
    summary["duration_s"] = round(time.monotonic() - started, 3)
    if problems:
        raise VerificationError(uri, problems)
    # Prod is back where it was: so is each prefix's current pointer (the contract version it follows).
    from greenlight.promotion.gates import restore_pointer

    for _loc, manifest in manifests:
        if restore_pointer(store, manifest["destination"], manifest["run_id"]):
            summary.setdefault("pointers_restored", []).append(manifest["destination"])
    return summary


def _try(func, arg) -> str | None:
    try:
        func(arg)
        return None
    except GreenlightError:
        raise
    except Exception as exc:  # noqa: BLE001 - collected and reported
        return f"{error_code(exc) or type(exc).__name__}: {exc}"

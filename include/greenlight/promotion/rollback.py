"""Exact rollback of a promotion from its manifest.

Every key a promotion touched goes back to its recorded pre-promotion version: a key that existed
is restored by copying that VersionId over the current object; a key that did not exist is
deleted (a delete marker in the versioned bucket). Keys the promotion did not touch are left alone.
Before changing anything, every recorded version must still exist (a lifecycle rule may have
expired it); otherwise the rollback is refused listing the keys, unless ``allow_partial``.

A rollback writes its own manifest in the promotion format (the state of each key before the
rollback), so a rollback can itself be rolled back.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from greenlight.errors import GreenlightError, ManifestError, RefusedError, VerificationError
from greenlight.storage.manifests import ManifestStore, read_manifest_uri, safe_name, utcnow
from greenlight.storage.s3 import S3Uri, error_code, object_state, parse_s3_uri

log = logging.getLogger("greenlight.promotion.rollback")
KIND = "greenlight.promotion/v1"


def load_prefix_manifests(uri: str, client) -> list[tuple[str, dict[str, Any]]]:
    """A run index or a single prefix manifest -> [(location, manifest)]."""
    doc = read_manifest_uri(uri, client)
    if doc.get("kind") == "greenlight.promotion-run/v1":
        out = []
        for row in doc.get("prefixes", ()):
            if row.get("manifest"):
                out.append((row["manifest"], read_manifest_uri(row["manifest"], client)))
        return out
    if doc.get("kind") != KIND:
        raise ManifestError(f"{uri} is not a greenlight promotion manifest (kind={doc.get('kind')!r})")
    return [(uri, doc)]


def _version_exists(client, bucket: str, key: str, version_id: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        return True
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "NotFound", "400", "InvalidArgument"):
            return False
        raise


def rollback(
    uri: str,
    client,
    *,
    only: list[str] | None = None,
    dry_run: bool = False,
    allow_partial: bool = False,
    run_id: str | None = None,
    workers: int = 32,
) -> dict[str, Any]:
    """Restore every key of the promotion at ``uri`` to its recorded pre-promotion state."""
    started = time.monotonic()
    run_id = run_id or "rollback__" + time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    manifests = load_prefix_manifests(uri, client)
    if only:
        wanted = {parse_s3_uri(o).prefix if o.startswith("s3://") else o for o in only}
        manifests = [
            (loc, m)
            for loc, m in manifests
            if m["source"] in only or m["destination"] in only or parse_s3_uri(m["destination"]).prefix in wanted
        ]
        if not manifests:
            raise RefusedError(str(only), f"none of these prefixes is in the manifest {uri}")

    # 1. Work out what each key needs, and refuse before any change if a version is gone.
    steps: list[dict[str, Any]] = []
    missing: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _loc, manifest in manifests:
            bucket = manifest["bucket"]
            entries = manifest.get("actions", [])
            currents = list(pool.map(lambda e, b=bucket: object_state(client, b, e["key"]), entries))
            befores = [e.get("before") for e in entries]
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
            for entry, current, before, ok in zip(entries, currents, befores, exists, strict=True):
                key = entry["key"]
                if before is None:
                    action = "delete" if current is not None else "none"
                elif not before.get("version_id"):
                    missing.append(f"s3://{bucket}/{key} (no version recorded: bucket was unversioned)")
                    continue
                elif not ok:
                    missing.append(f"s3://{bucket}/{key} (version {before['version_id']} no longer exists)")
                    continue
                elif current is not None and current["version_id"] == before["version_id"]:
                    action = "none"
                elif current is not None and current["etag"] == before["etag"] and current["size"] == before["size"]:
                    action = "none"  # same content already current (e.g. a second rollback)
                else:
                    action = "restore"
                steps.append({"bucket": bucket, "key": key, "action": action, "before": before, "current": current})
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
        "plan_lines": lines,
    }
    if dry_run:
        for line in lines:
            log.info("(dry run) %s", line)
        summary["duration_s"] = round(time.monotonic() - started, 3)
        return summary

    # 2. Record the rollback's own "before" (so it can be undone), then change prod.
    stores: dict[str, ManifestStore] = {}
    docs: dict[str, dict[str, Any]] = {}
    for loc, manifest in manifests:
        root = parse_s3_uri(loc, directory=False) if loc.startswith("s3://") else None
        if root is None:
            raise ManifestError(f"rollback manifests are written next to the promotion's: {loc} is not on S3")
        base = (
            root.prefix.split("promotions/")[0] if "promotions/" in root.prefix else root.prefix.rsplit("/", 1)[0] + "/"
        )
        stores[loc] = ManifestStore(S3Uri(root.bucket, base), client)
        mine = [
            s
            for s in todo
            if s["bucket"] == manifest["bucket"] and any(e["key"] == s["key"] for e in manifest["actions"])
        ]
        docs[loc] = {
            "kind": KIND,
            "run_id": run_id,
            "rollback_of": loc,
            "source": manifest["destination"],
            "destination": manifest["destination"],
            "bucket": manifest["bucket"],
            "status": "pending",
            "started_at": utcnow(),
            "updated_at": utcnow(),
            "attempts": 1,
            "actions": [
                {
                    "key": s["key"],
                    "action": "copy" if s["action"] == "restore" else "delete",
                    "before": s["current"],
                    "source": {"key": s["key"], "version_id": s["before"]["version_id"]} if s["before"] else None,
                    "done": False,
                }
                for s in mine
            ],
        }
    rel = {loc: f"rollbacks/{safe_name(run_id)}/{safe_name(docs[loc]['destination'][5:])}.json" for loc in docs}
    for loc, doc in docs.items():
        stores[loc].write(rel[loc], doc)

    failures: list[str] = []

    def apply(step: dict[str, Any]) -> None:
        if step["action"] == "restore":
            client.copy_object(
                Bucket=step["bucket"],
                Key=step["key"],
                CopySource={"Bucket": step["bucket"], "Key": step["key"], "VersionId": step["before"]["version_id"]},
                MetadataDirective="COPY",
            )
        else:
            client.delete_objects(Bucket=step["bucket"], Delete={"Objects": [{"Key": step["key"]}]})

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for step, result in zip(todo, pool.map(lambda s: _try(apply, s), todo), strict=True):
            if result:
                failures.append(f"{step['key']}: {result}")
                continue
            summary["restored" if step["action"] == "restore" else "deleted"] += 1
            log.info(
                "%s: s3://%s/%s", "restored" if step["action"] == "restore" else "deleted", step["bucket"], step["key"]
            )

    # 3. Verify object by object that prod is back to the recorded state.
    problems = list(failures)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        afters = list(pool.map(lambda s: object_state(client, s["bucket"], s["key"]), steps))
    for step, after in zip(steps, afters, strict=True):
        before = step["before"]
        if before is None and after is not None:
            problems.append(f"{step['key']}: still exists")
        elif before is not None and (
            after is None or (after["etag"], after["size"]) != (before["etag"], before["size"])
        ):
            problems.append(f"{step['key']}: content differs from version {before['version_id']}")
    for loc, doc in docs.items():
        done_keys = {s["key"] for s in todo} - {p.split(":")[0] for p in failures}
        for action in doc["actions"]:
            action["done"] = action["key"] in done_keys
        doc["status"] = "failed" if problems else "complete"
        doc["updated_at"] = utcnow()
        summary.setdefault("rollback_manifests", []).append(stores[loc].write(rel[loc], doc))
    summary["duration_s"] = round(time.monotonic() - started, 3)
    if problems:
        raise VerificationError(uri, problems)
    # Prod is back where it was: so is each prefix's current pointer (the contract version it follows).
    from greenlight.promotion.gates import restore_pointer

    for loc, manifest in manifests:
        if restore_pointer(stores[loc], manifest["destination"], manifest["run_id"]):
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

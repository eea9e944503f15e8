"""The promotion engine: list, guard, execute, verify one S3 prefix at a time.

Owns everything that talks to S3 for a promotion: listing both sides into a plan
(:func:`greenlight.promotion.plan.diff` decides on size + ETag, never modification time), the
safety checks before any write (empty source, delete limits, sign-off marker, source-bucket
guard, the gated QA snapshot), the promotion manifest with every object's "before" state written
*before* prod changes, parallel copies (one object's copy is :mod:`greenlight.promotion.copier`'s),
deletes only after every copy succeeded, the run index, the current pointer and verification.
The documents it records (snapshot, manifest, run index) and their paths are
:mod:`greenlight.promotion.records`'.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from typing import Any

from greenlight.errors import (
    ConfigError,
    PreconditionError,
    QAChangedError,
    RefusedError,
    StalePrefixError,
    SyncFailedError,
    VerificationError,
)
from greenlight.promotion import records
from greenlight.promotion.config import PrefixConfig, PromotionConfig
from greenlight.promotion.copier import EndpointUnreachableError, ObjectCopier, decisive_error, is_unreachable
from greenlight.promotion.gates import UNREAD, pointer_path, publish_pointer, read_pointer
from greenlight.promotion.plan import PrefixPlan, PrefixResult, contract_record, diff
from greenlight.promotion.progress import Progress
from greenlight.promotion.qa import running_runs
from greenlight.storage.fast import FastS3
from greenlight.storage.manifests import ManifestStore
from greenlight.storage.s3 import (
    ObjectInfo,
    bucket_versioning,
    error_code,
    is_multipart_etag,
    list_prefix,
    normalize_etag,
    object_state,
)

log = logging.getLogger("greenlight.promotion.engine")

DELETE_BATCH = 1000


class Engine:
    """Promotes the prefixes of a :class:`PromotionConfig` with one shared S3 client.

    The engine never writes to a source bucket: every write goes through :meth:`_guard`, which
    also calls ``guard(bucket)`` when given (a caller's own destination rule; it raises to refuse).
    """

    def __init__(
        self,
        config: PromotionConfig,
        client,
        *,
        workers: int | None = None,
        progress: Progress | None = None,
        fast: FastS3 | None = None,
        guard: Callable[[str], None] | None = None,
    ):
        self.config = config
        self._extra_guard = guard  # another caller's own destination rule (e.g. the staging refresh)
        self.client = client
        self.workers = workers or config.workers
        self.progress = progress
        self._source_buckets = {p.source.bucket for p in config.prefixes}
        # Hot calls (list, head, copy) go through the lean signed-HTTP path when it applies.
        self.fast = fast or FastS3.from_client(client, max_pool=max(self.workers, 16) + 16)
        self.data = self.fast or client
        self.manifests = ManifestStore(config.manifest_uri, self.data) if config.manifest_uri else None
        self.copier = ObjectCopier(client, self.data, self._guard)
        self.run_index = records.RunIndex(self.manifests) if self.manifests else None

    # ------------------------------------------------------------------ guards
    def _guard(self, bucket: str) -> None:
        if bucket in self._source_buckets:
            raise ConfigError(f"refusing to write to source bucket {bucket!r}")
        if self._extra_guard is not None:
            self._extra_guard(bucket)

    def check_mlflow(self, tracking_uri: str | None) -> list[dict[str, Any]]:
        """No run of a prefix's QA experiments may be RUNNING (it could be writing to QA right now)."""
        wanted = sorted({e for p in self.config.prefixes for e in p.settings.mlflow_experiments})
        if not wanted:
            return []
        if not tracking_uri:
            raise ConfigError(
                f"mlflow_experiments {wanted} are configured but no MLflow tracking URI is set "
                "(MLFLOW_TRACKING_URI, or the Airflow connection mlflow_default)"
            )
        running = running_runs(tracking_uri, wanted)
        for p in self.config.prefixes:
            mine = [r for r in running if r["experiment"] in p.settings.mlflow_experiments]
            if mine:
                listed = ", ".join(f"{r['run_id']} ({r['run_name']}, experiment {r['experiment']})" for r in mine)
                raise PreconditionError(
                    p.label, f"{len(mine)} QA run(s) still RUNNING in MLflow: {listed}; rerun when they have finished"
                )
        return [{"experiment": e, "running": 0} for e in wanted]

    def preflight(self) -> list[dict[str, Any]]:
        """Both buckets of every prefix reachable; destination versioning as configured."""
        report = []
        checked: set[str] = set()
        for p in self.config.prefixes:
            for bucket in (p.source.bucket, p.destination.bucket):
                if bucket in checked:
                    continue
                try:
                    self.data.head_bucket(Bucket=bucket)
                except Exception as exc:
                    code = error_code(exc)
                    if code in ("404", "NoSuchBucket", "NotFound"):
                        raise RefusedError(p.label, f"bucket {bucket!r} does not exist") from exc
                    raise
                checked.add(bucket)
        versioning: dict[str, str] = {}  # one request per destination bucket
        for p in self.config.prefixes:
            bucket = p.destination.bucket
            if bucket not in versioning:
                versioning[bucket] = bucket_versioning(self.data, bucket)
            status = versioning[bucket]
            report.append({"prefix": p.label, "destination": str(p.destination), "versioning": status or "Disabled"})
            if status != "Enabled" and not p.settings.allow_unversioned:
                raise RefusedError(
                    p.label,
                    f"destination bucket {p.destination.bucket!r} has versioning {status or 'never enabled'}; "
                    "without versioning a promotion cannot be rolled back (set allow_unversioned: true to accept)",
                )
        return report

    # ------------------------------------------------------------------ plan
    def plan(self, prefix: PrefixConfig, pool: ThreadPoolExecutor | None = None) -> PrefixPlan:
        own = pool is None
        pool = pool or ThreadPoolExecutor(max_workers=16, thread_name_prefix="gl-list")
        try:
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gl-side") as sides:
                fut_src = sides.submit(list_prefix, self.data, prefix.source, pool=pool)
                fut_dst = sides.submit(list_prefix, self.data, prefix.destination, pool=pool)
                source, dest = fut_src.result(), fut_dst.result()
        finally:
            if own:
                pool.shutdown()
        planned = diff(source, dest, prefix)
        planned.byte_ordered = source.byte_ordered and dest.byte_ordered
        return planned

    def plan_all(self) -> list[PrefixPlan]:
        with (
            ThreadPoolExecutor(max_workers=16, thread_name_prefix="gl-list") as pool,
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="gl-prefix") as outer,
        ):
            return list(outer.map(lambda p: self.plan(p, pool), self.config.prefixes))

    def check(self, plan: PrefixPlan) -> None:
        """Safety rules: refuse (exit 2) before any change, naming the prefix."""
        p = plan.prefix
        if plan.source_count == 0 and not p.settings.allow_empty:
            raise RefusedError(
                p.label,
                f"source prefix is missing or empty; promoting it would delete all {plan.dest_count} objects "
                f"under {p.destination} (set allow_empty: true for this prefix if that is intended)",
            )
        marker_key = p.settings.signoff_marker
        if marker_key:
            if plan.marker is None:
                raise PreconditionError(
                    p.label, f"QA sign-off marker {p.source.join(marker_key)} is missing: QA has not signed off"
                )
            newest = plan.source_newest
            if newest is not None and newest.last_modified and plan.marker.last_modified < newest.last_modified:
                raise PreconditionError(
                    p.label,
                    f"QA sign-off marker {marker_key} ({plan.marker.last_modified.isoformat()}) is older than "
                    f"{newest.rel} ({newest.last_modified.isoformat()}): QA changed after sign-off",
                )
        limit = p.settings.delete_limit(plan.dest_count)
        if len(plan.deletes) > limit and not (plan.source_count == 0 and p.settings.allow_empty):
            raise RefusedError(
                p.label,
                f"plan deletes {len(plan.deletes)} of {plan.dest_count} objects under {p.destination}, more than "
                f"the limit of {limit} (max_delete_fraction={p.settings.max_delete_fraction}, "
                f"max_delete_count={p.settings.max_delete_count})",
            )
        self._guard(p.destination.bucket)

    def check_stale(self, plan: PrefixPlan, now: datetime | None = None) -> None:
        """A prefix with nothing to do whose destination was not modified recently is stale."""
        hours = plan.prefix.settings.stale_after_hours
        if hours is None or plan.copies or plan.deletes:
            return
        now = now or datetime.now(UTC)
        newest = plan.dest_newest
        if newest is None or now - newest > timedelta(hours=hours):
            when = newest.isoformat() if newest else "never"
            raise StalePrefixError(
                plan.prefix.label,
                f"nothing to copy or delete and {plan.prefix.destination} was last modified {when}, "
                f"more than {hours:g} h ago: QA has not produced anything new (stale_after_hours)",
            )

    # ------------------------------------------------------------------ the QA snapshot
    def snapshot_path(self, run_id: str, prefix: PrefixConfig) -> str:
        return records.snapshot_path(run_id, prefix)

    def save_snapshot(self, plan: PrefixPlan, run_id: str) -> str | None:
        """Record the QA listing (key, size, ETag) this run plans and gates: what ``promote`` may copy."""
        if not self.manifests:
            return None
        self._guard(self.config.manifest_uri.bucket)
        doc = records.snapshot_doc(plan, run_id)
        return self.manifests.write(self.snapshot_path(run_id, plan.prefix), doc, compact=True)

    def check_snapshot(self, plan: PrefixPlan, run_id: str, within: Callable[[str], bool] | None = None) -> None:
        """Refuse (:class:`QAChangedError`, never retried) when QA differs from the snapshot this
        run's gates validated: changed, added or removed objects are named. ``within``: only the
        snapshot's keys it accepts are compared (a shard's key range)."""
        if not self.manifests:
            return
        rel = self.snapshot_path(run_id, plan.prefix)
        saved = self.manifests.read(rel)
        validated = self.snapshot_objects(saved)
        if saved is None or validated is None:
            raise QAChangedError(
                plan.prefix.label,
                f"no validated QA snapshot for run {run_id!r} ({self.manifests.uri(rel)}): "
                "clear and rerun the whole run (plan, gate, promote)",
            )
        if within is not None:
            validated = {k: v for k, v in validated.items() if within(k)}
        parts = records.snapshot_changes(validated, plan.snapshot, plan.prefix.source)
        if parts:
            raise QAChangedError(
                plan.prefix.label,
                "; ".join(parts) + " since the gates validated it (snapshot taken "
                f"{saved.get('taken_at')}); nothing was promoted for this prefix. Clear and rerun the whole "
                "run to plan and gate the new QA snapshot",
            )

    def read_snapshot(self, run_id: str, prefix: PrefixConfig) -> dict[str, tuple[int, str]] | None:
        """The QA snapshot this run saved for ``prefix`` (rel -> (size, ETag)), None when there is none."""
        if not self.manifests:
            return None
        return self.snapshot_objects(self.manifests.read(self.snapshot_path(run_id, prefix)))

    @staticmethod
    def snapshot_objects(saved: dict[str, Any] | None) -> dict[str, tuple[int, str]] | None:
        return records.snapshot_objects(saved)

    # ------------------------------------------------------------------ execute
    def manifest_path(self, run_id: str, prefix: PrefixConfig) -> str:
        return records.manifest_path(run_id, prefix)

    def execute(
        self,
        plan: PrefixPlan,
        run_id: str,
        *,
        dry_run: bool = False,
        record: dict[str, Any] | None = None,
        manifest_rel: str | None = None,
        checked: bool = False,
        applied: Callable[[], None] | None = None,
    ) -> PrefixResult:
        """Carry out a checked plan; returns the result, raises SyncFailedError if anything failed.

        ``record`` (e.g. the contract the prefix passed) is kept in the prefix's manifest.
        ``manifest_rel`` / ``checked``: a shard's manifest part, and a part of a plan whose whole
        prefix the caller already checked (:mod:`greenlight.promotion.shards`). ``applied`` is
        called once every copy and delete succeeded, before their outcome is recorded (the CLI
        starts its read-only verify listing there, beside the manifest write)."""
        p = plan.prefix
        started = time.monotonic()
        result = PrefixResult(
            prefix=p.label,
            destination=str(p.destination),
            unchanged=plan.unchanged,
            objects_seen=plan.source_count,
            dry_run=dry_run,
        )
        if dry_run:
            for line in plan.lines():
                log.info("(dry run) %s", line)
            result.duration_s = round(time.monotonic() - started, 3)
            return result
        if checked:
            self._guard(p.destination.bucket)
        else:
            self.check(plan)
        if not plan.copies and not plan.deletes:
            result.duration_s = round(time.monotonic() - started, 3)
            return result

        manifest_rel = manifest_rel or self.manifest_path(run_id, p)
        doc = self._start_manifest(manifest_rel, plan, run_id, record)
        result.manifest = self.manifests.uri(manifest_rel) if self.manifests else None
        entries: dict[str, dict[str, Any]] = {e["key"]: e for e in doc["actions"]}
        lock = threading.Lock()

        failures: list[str] = []
        causes: dict[BaseException, str] = {}  # each failed copy's own error -> its line in ``failures``
        qa_changed: list[str] = []  # copies refused by CopySourceIfMatch (or gone): QA is not what was planned
        # Circuit breaker: once the S3 endpoint refuses connections (after the client's own retries),
        # the remaining copies are not attempted; the task fails fast and Airflow retries it later.
        unreachable = threading.Event()

        def copy(src: ObjectInfo):
            if unreachable.is_set():
                raise EndpointUnreachableError(f"not attempted: {p.destination.bucket} endpoint unreachable")
            return self.copier.copy(p, src)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gl-copy") as pool:
            futures = {pool.submit(copy, src): src for src, _ in plan.copies}
            for fut in as_completed(futures):
                src = futures[fut]
                key = p.destination.join(src.rel)
                try:
                    etag, version, source_version = fut.result()
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    code = error_code(exc) or type(exc).__name__
                    source_uri = f"s3://{p.source.bucket}/{p.source.join(src.rel)}"
                    failures.append(f"copy {source_uri} -> s3://{p.destination.bucket}/{key}: {code}: {exc}")
                    causes[exc] = failures[-1]
                    # 412: the source no longer has the planned ETag; NoSuchKey (CopyObject names the
                    # source): it is gone. Either way QA is not the snapshot the gates validated.
                    if code in ("PreconditionFailed", "412", "NoSuchKey"):
                        qa_changed.append(source_uri)
                    if is_unreachable(exc) and not unreachable.is_set():
                        unreachable.set()
                        log.error("S3 endpoint unreachable (%s): not attempting the remaining copies", exc)
                    elif not isinstance(exc, EndpointUnreachableError):
                        log.error("copy failed: %s -> %s: %s", p.source.join(src.rel), key, exc)
                    continue
                with lock:
                    entry = entries[key]
                    entry["after"] = {"version_id": version, "etag": etag, "size": src.size}
                    entry["source"]["version_id"] = source_version
                    entry["done"] = True
                if is_multipart_etag(src.etag) and normalize_etag(etag) != normalize_etag(src.etag):
                    # Prod changed (recorded above for the rollback), but equality with QA is not
                    # proven: it does not count as copied, and no delete runs after it.
                    failures.append(
                        f"copy {src.rel}: ETag {etag} differs from the source's {src.etag} (a multipart layout "
                        "this server does not reproduce): not counted as copied"
                    )
                    continue
                result.copied += 1
                result.bytes_copied += src.size
                if self.progress:
                    self.progress.advance(1, src.size)

        if failures:
            result.failed = len(failures)
            result.errors = failures[:20]
            result.duration_s = round(time.monotonic() - started, 3)
            self._finish_manifest(manifest_rel, doc, "failed", result)
            if qa_changed:
                error: QAChangedError | SyncFailedError = QAChangedError(
                    p.label,
                    f"{len(qa_changed)} object(s) changed or removed since they were planned and gated: "
                    + ", ".join(sorted(qa_changed)[:20])
                    + f"; no object was deleted. Clear and rerun the whole run to gate the new snapshot "
                    f"(manifest {result.manifest})",
                )
            else:
                cause = decisive_error(list(causes))
                which = "first" if cause is None or cause is next(iter(causes)) else "first not retryable"
                shown = causes[cause] if cause is not None else failures[0]
                error = SyncFailedError(
                    f"{p.label}: {len(failures)} of {len(plan.copies)} copies failed, no object was deleted; "
                    f"{which}: {shown}"
                )
            error.result = result
            # The copy's own error is the cause, so triage classifies by it: AccessDenied is a
            # permission error (never retried), a dropped connection stays transient.
            raise error from decisive_error(list(causes))

        for start in range(0, len(plan.deletes), DELETE_BATCH):
            batch = plan.deletes[start : start + DELETE_BATCH]
            self._guard(p.destination.bucket)
            for d in batch:
                log.info("delete: s3://%s/%s (%d B)", p.destination.bucket, p.destination.join(d.rel), d.size)
            response = self.data.delete_objects(
                Bucket=p.destination.bucket,
                Delete={"Objects": [{"Key": p.destination.join(d.rel)} for d in batch], "Quiet": False},
            )
            for err in response.get("Errors", ()):
                failures.append(f"delete {err.get('Key')}: {err.get('Code')}: {err.get('Message')}")
            for done in response.get("Deleted", ()):
                entry = entries.get(done["Key"])
                if entry is not None:
                    entry["after"] = {"delete_marker_version_id": done.get("DeleteMarkerVersionId")}
                    entry["done"] = True
                    result.deleted += 1
            if self.progress:
                self.progress.advance(len(batch), 0)
        result.duration_s = round(time.monotonic() - started, 3)
        if failures:
            result.failed = len(failures)
            result.errors = failures[:20]
            self._finish_manifest(manifest_rel, doc, "failed", result)
            error = SyncFailedError(f"{p.label}: {len(failures)} deletes failed; first: {failures[0]}")
            error.result = result
            raise error
        if applied is not None:
            applied()
        self._finish_manifest(manifest_rel, doc, "complete", result)
        return result

    def _before_states(self, plan: PrefixPlan) -> dict[str, dict[str, Any]]:
        """VersionId/ETag/size of every destination object about to be overwritten or deleted."""
        dest = plan.prefix.destination
        targets = [d for _, d in plan.copies if d is not None] + list(plan.deletes)

        def head(info: ObjectInfo) -> tuple[str, dict[str, Any] | None]:
            key = dest.join(info.rel)
            # None if it vanished since the listing: "absent" is then the state to roll back to.
            return key, object_state(self.data, dest.bucket, key)

        if not targets:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, 32), thread_name_prefix="gl-head") as pool:
            return dict(pool.map(head, targets))

    def _start_manifest(
        self, rel: str, plan: PrefixPlan, run_id: str, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gl-manifest") as side:
            # A rerun's earlier manifest is read while the "before" states are taken (both read-only).
            earlier = side.submit(self.manifests.read, rel) if self.manifests else None
            befores = self._before_states(plan)
            previous = earlier.result() if earlier is not None else None
        doc = records.manifest_doc(plan, run_id, befores, previous, record)
        if self.manifests:
            self._guard(self.config.manifest_uri.bucket)
            self.manifests.write(rel, doc)
        return doc

    def _finish_manifest(self, rel: str, doc: dict[str, Any], status: str, result: PrefixResult) -> None:
        records.finish_manifest_doc(doc, status, result)
        if self.manifests:
            self.manifests.write(rel, doc)

    def write_run_index(self, run_id: str, results: list[dict[str, Any]], **extra: Any) -> str | None:
        """One index per run naming every prefix manifest: the handle a rollback is given
        (compare-and-write, safe with concurrent writers: :class:`~greenlight.promotion.records.RunIndex`)."""
        if not self.run_index:
            return None
        self._guard(self.config.manifest_uri.bucket)
        return self.run_index.update(run_id, results, **extra)

    def current_pointer(self, prefix: PrefixConfig) -> dict[str, Any] | None:
        """The prefix's current pointer (None: there is none, or no manifest store)."""
        return read_pointer(self.manifests, prefix)

    def pointer_moves(self, prefix: PrefixConfig, manifest: str | None, *, current: Any = UNREAD) -> bool:
        """Whether a verified run with this promotion manifest moves the prefix's current pointer.

        A verified run that changed nothing (no manifest) moves it only when the contract version
        changed: the pointer keeps naming the promotion that made prod what it is, so rolling that
        promotion back also restores the pointer before it. ``current``: the pointer, when the
        caller already read it (:meth:`current_pointer`)."""
        if not self.manifests:
            return False
        if current is UNREAD:
            current = self.current_pointer(prefix)
        record = contract_record(prefix)
        return not (manifest is None and current and all(current.get(k) == v for k, v in record.items()))

    def publish_verified(
        self,
        prefix: PrefixConfig,
        run_id: str,
        manifest: str | None,
        objects: int,
        *,
        moves: bool | None = None,
        parts: list[str] | None = None,
        current: Any = UNREAD,
    ) -> str | None:
        """Move the prefix's current pointer to this verified promotion (see :mod:`greenlight.promotion.gates`),
        when :meth:`pointer_moves` says so (``moves``: its answer, when the caller already asked);
        ``parts``: every shard's manifest part of a sharded prefix; ``current``: the pointer it
        replaces, when the caller already read it under the prefix's lease (read once, not twice).
        Returns the pointer's location."""
        if not self.manifests:
            return None
        if not (self.pointer_moves(prefix, manifest, current=current) if moves is None else moves):
            return self.manifests.uri(pointer_path(prefix))
        self._guard(self.config.manifest_uri.bucket)
        record = contract_record(prefix)
        shards = {"manifests": list(parts)} if parts else {}
        return publish_pointer(
            self.manifests,
            prefix,
            replacing=current,
            run_id=run_id,
            manifest=manifest,
            objects=objects,
            **record,
            **shards,
        )

    def list_destination(self, prefix: PrefixConfig, expected: Iterable[str] = ()) -> dict[str, ObjectInfo]:
        """Every object under the prefix's destination (keyed by path under it), the sign-off marker
        left out. ``expected``: the keys prod should hold (the gated snapshot's): their first-level
        sub-prefixes are listed at once, beside the top-level listing that finds any other."""
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="gl-list") as pool:
            dest = list_prefix(self.data, prefix.destination, pool=pool, expect=expected)
        dest.pop(prefix.settings.signoff_marker or "", None)  # QA process state, never promoted
        return dest

    def verify(
        self,
        prefix: PrefixConfig,
        snapshot: dict[str, tuple[int, str]] | None = None,
        *,
        listed: dict[str, ObjectInfo] | None = None,
    ) -> dict[str, Any]:
        """Prove the destination equals the source for this prefix (:class:`VerificationError` if not).

        With ``snapshot`` (rel -> (size, ETag): the QA listing this run planned and gated, which
        every copy was conditional on) only the destination is listed and compared with it
        (``listed``: that listing, when the caller took it after the prefix's last change).
        Without one, both sides are listed again."""
        if snapshot is None:
            plan = self.plan(prefix)
            problems = [f"missing or different: {s.rel}" for s, _ in plan.copies]
            problems += [f"extra in destination: {d.rel}" for d in plan.deletes]
            objects = plan.source_count
        else:
            dest = self.list_destination(prefix, snapshot) if listed is None else listed
            problems = [
                f"missing or different: {rel}"
                for rel, state in sorted(snapshot.items())
                if (d := dest.get(rel)) is None or (d.size, normalize_etag(d.etag)) != tuple(state)
            ]
            problems += [f"extra in destination: {rel}" for rel in sorted(dest.keys() - snapshot.keys())]
            objects = len(snapshot)
        if problems:
            raise VerificationError(prefix.label, problems)
        return {
            "prefix": prefix.label,
            "destination": str(prefix.destination),
            "objects": objects,
            "equal": True,
        }

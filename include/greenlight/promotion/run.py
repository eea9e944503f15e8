"""The promotion run sequence, one function per step: preflight, plan, gate, promote, verify, summary.

The CLI (:func:`promote`) runs the steps in order in one process, prefixes side by side; the
``artefact_promotion`` DAG runs each step as a task (``gate`` and ``promote`` mapped per prefix) and
adds only Airflow concerns: XCom, the branch, Asset events. Both give ``dry_run`` the same meaning:
plan, gate and log everything, write nothing (no copy, no delete, no manifest, no gate record, no
pointer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from greenlight.errors import QAChangedError, StalePrefixError, SyncFailedError, VerificationError
from greenlight.promotion import shards
from greenlight.promotion.config import PrefixConfig, PromotionConfig
from greenlight.promotion.engine import Engine
from greenlight.promotion.gates import GateFailedError, evaluate_gate, log_gate, record_gate
from greenlight.promotion.plan import PrefixPlan, contract_record, prefix_line, summarize
from greenlight.promotion.progress import Progress
from greenlight.storage.fast import FastS3
from greenlight.storage.lease import holding

log = logging.getLogger("greenlight.promotion.run")


def preflight(engine: Engine, tracking_uri: str | None) -> list[dict[str, Any]]:
    """Runbook §2 preconditions: contracts load, both buckets answer, prod versioned, no QA run RUNNING."""
    for prefix in engine.config.prefixes:  # a broken contract file is bad config: fail before reading QA
        if prefix.contract:
            from greenlight.contracts import load_contract  # only when a prefix has one: costly import

            contract = load_contract(prefix.contract)
            log.info("preflight ok: %s has contract %s v%d", prefix.label, contract.name, contract.version)
    report = engine.preflight()
    for row in engine.check_mlflow(tracking_uri):
        log.info("preflight ok: no RUNNING run in MLflow experiment %s", row["experiment"])
    for row in report:
        log.info("preflight ok: %s -> %s (versioning %s)", row["prefix"], row["destination"], row["versioning"])
    return report


def plan(engine: Engine, *, run_id: str | None = None, dry_run: bool = True) -> list[PrefixPlan]:
    """List both sides of every prefix and apply the safety rules; any refusal stops the whole run.

    With a ``run_id`` (and not a dry run) the QA listing of each prefix is kept as the run's
    snapshot: the gates validate it and ``promote`` copies nothing else."""
    plans = engine.plan_all()
    for p in plans:
        engine.check(p)
    if run_id and not dry_run:  # independent records: written side by side, all before any gate or copy
        with ThreadPoolExecutor(max_workers=min(8, len(plans)) or 1, thread_name_prefix="gl-snapshot") as pool:
            list(pool.map(lambda p: engine.save_snapshot(p, run_id), plans))
    for s in (p.summary() for p in plans):
        log.info(
            "plan %s: copy %d (overwrite %d), delete %d, unchanged %d, %d bytes",
            s["prefix"],
            s["to_copy"],
            s["to_overwrite"],
            s["to_delete"],
            s["unchanged"],
            s["bytes_to_copy"],
        )
    return plans


def gate(
    engine: Engine, prefix: PrefixConfig, run_id: str, *, dry_run: bool, validate: Callable | None = None
) -> dict[str, Any]:
    """One prefix's contract gate (never changes prod); recorded with the run's manifests unless a dry run."""
    result = evaluate_gate(engine.client, prefix, store=engine.manifests, validate=validate)
    result["manifest"] = None if dry_run else record_gate(engine.manifests, run_id, prefix, result)
    log_gate(result)
    return result


def failed_gates(gates: list[dict[str, Any]]) -> list[str]:
    """Names of the prefixes whose gate failed (empty: promote)."""
    return [g["name"] or g["prefix"] for g in gates if not g["passed"]]


def promote_prefix(
    engine: Engine, planned: PrefixPlan, run_id: str, *, dry_run: bool, applied: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Copy and delete one checked prefix, recording the manifest before anything changes.

    Raises :class:`SyncFailedError` when a copy or delete failed (retryable: a rerun does only
    what is still missing), :class:`QAChangedError` when a QA object no longer has the planned
    ETag (never retried). Either way the run index lists the prefix and its partial manifest.
    ``applied``: see :meth:`Engine.execute`."""
    try:
        result = engine.execute(
            planned, run_id, dry_run=dry_run, record=contract_record(planned.prefix), applied=applied
        )
    except (SyncFailedError, QAChangedError) as exc:
        if exc.result is not None and exc.result.manifest:
            engine.write_run_index(run_id, [failed_row(exc)], status="failed")
        raise
    row = result.as_dict()
    if row.get("manifest"):
        # The index names each prefix as soon as it changed prod, so a run that fails later (or
        # whose summary never runs) still rolls back exactly from its index.
        engine.write_run_index(run_id, [row], status="in_progress")
    log.info("promoted %s", prefix_line(row))
    return row


def failed_row(exc: SyncFailedError | QAChangedError) -> dict[str, Any]:
    """The run-index row of a prefix that failed part-way (its manifest is what a rollback needs)."""
    return {**exc.result.as_dict(), "status": "failed", "errors": [str(exc)]}


def check_stale(engine: Engine, planned: PrefixPlan, *, dry_run: bool) -> None:
    """After the copy: a prefix with nothing to do whose prod side is old is stale (raises, exit 1)."""
    if not dry_run:
        engine.check_stale(planned)


def verify_prefix(
    engine: Engine,
    prefix: PrefixConfig,
    row: dict[str, Any],
    run_id: str,
    *,
    planned: PrefixPlan | None = None,
    listing: Future | None = None,
) -> dict[str, Any]:
    """Runbook §4: prove prod equals QA object by object, then move the prefix's current pointer.

    ``planned`` is the plan the promotion ran on: when it had nothing to do, its own listings
    already proved both sides equal and nothing is listed again. ``listing``: prod's listing
    (:meth:`Engine.list_destination`), started by the caller after the prefix's last change."""
    unchanged = planned is not None and not planned.copies and not planned.deletes
    manifest = row.get("manifest")
    # Reads only, beside the listing (the prefix's lease keeps other writers out meanwhile): the
    # current pointer, read once for both the decision and the "previous" it keeps, and the run's
    # manifest when a cleared and rerun promote returned none (an earlier try changed prod, and
    # this run still has to move the pointer).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gl-verify") as side:
        pointer = side.submit(engine.current_pointer, prefix)
        earlier = side.submit(_run_manifest, engine, run_id, prefix) if manifest is None else None
        if unchanged:
            check = planned.verified()
        else:  # prod against the QA snapshot this run gated: only prod is listed again
            snapshot = planned.snapshot if planned is not None else engine.read_snapshot(run_id, prefix)
            check = engine.verify(prefix, snapshot, listed=listing.result() if listing is not None else None)
        current = pointer.result()
        manifest = manifest if earlier is None else earlier.result()
    check["asset_name"] = prefix.asset_name
    log.info("verified %s: %d objects equal in %s", prefix.label, check["objects"], prefix.destination)
    # ``changed``: whether this run must leave the pointer naming it (what ``check-run`` verifies).
    check["changed"] = engine.pointer_moves(prefix, manifest, current=current)
    # A sharded prefix (``row`` merged from its shard rows): the pointer names every shard's part.
    parts = row.get("manifests") if row.get("shards") else None
    check["pointer"] = engine.publish_verified(
        prefix, run_id, manifest, check["objects"], moves=check["changed"], parts=parts, current=current
    )
    return check


def _run_manifest(engine: Engine, run_id: str, prefix: PrefixConfig) -> str | None:
    """The location of this run's manifest of ``prefix``, None when there is none."""
    if engine.manifests is None:
        return None
    rel = engine.manifest_path(run_id, prefix)
    return engine.manifests.uri(rel) if engine.manifests.read(rel) is not None else None


def summary(
    engine: Engine,
    rows: list[dict[str, Any]],
    verified: list[dict[str, Any]],
    *,
    run_id: str,
    dry_run: bool,
    duration: float,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """The final ``promotion_done`` line and the run index manifest (the handle for a rollback)."""
    total = summarize(sorted(rows, key=lambda r: r["prefix"]), run_id=run_id, dry_run=dry_run, duration=duration)
    total["verified"] = len(verified)
    if not dry_run and any(r.get("manifest") for r in rows):
        total["manifest"] = engine.write_run_index(
            run_id, total["per_prefix"], status="failed" if errors else "complete", verified=len(verified)
        )
    if errors:
        total["errors"] = list(errors)
    log.info(
        "promotion_done run_id=%s copied=%d deleted=%d unchanged=%d objects_seen=%d bytes_copied=%d manifest=%s",
        run_id,
        total["copied"],
        total["deleted"],
        total["unchanged"],
        total["objects_seen"],
        total["bytes_copied"],
        total["manifest"],
    )
    return total


def promote(
    config: PromotionConfig,
    client,
    *,
    run_id: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    tracking_uri: str | None = None,
    fast: FastS3 | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """The whole run in one process (the CLI): every step above, in the DAG's order.

    Everything is planned, checked and gated before the first change; a failed gate raises
    :class:`GateFailedError` (exit 2). Prefixes then run side by side; one failing does not stop
    the others, and the summary lists it under ``errors``. Unless a dry run, the run holds the
    lease of every prod prefix from before the plan to the end (another writer of one of them:
    :class:`~greenlight.storage.lease.LeaseHeldError`, exit 2, or wait up to ``wait`` seconds).
    """
    started = time.monotonic()
    engine = Engine(config, client, progress=progress, fast=fast)
    preflight(engine, tracking_uri)
    if dry_run:
        return _promote(engine, run_id=run_id, dry_run=True, progress=progress, started=started)
    destinations = [str(p.destination) for p in engine.config.prefixes]
    # Leases are small conditional PUTs: the lean data path carries them (no botocore client).
    with holding(
        engine.data, engine.config.manifest_uri, destinations, run_id=run_id, operation="promote", wait=wait
    ) as leases:
        total = _promote(engine, run_id=run_id, dry_run=False, progress=progress, started=started, leases=leases)
        total["leases"] = leases.report()
        return total


def _promote(engine: Engine, *, run_id: str, dry_run: bool, progress, started: float, leases=None) -> dict[str, Any]:
    plans = plan(engine, run_id=run_id, dry_run=dry_run)
    gates = [gate(engine, p, run_id, dry_run=dry_run) for p in engine.config.prefixes if p.contract]
    if failed_gates(gates):
        raise GateFailedError(gates)
    if progress:
        progress.start(sum(len(pl.copies) + len(pl.deletes) for pl in plans), sum(pl.bytes_to_copy for pl in plans))
    rows: list[dict[str, Any]] = []
    verified: list[dict[str, Any]] = []
    errors: list[str] = []

    def run_one(planned: PrefixPlan, side: ThreadPoolExecutor) -> None:
        if leases is not None:
            leases.check()
        ranges = shards.ranges_for(planned, listed=False)  # its shards copy from this plan: no listing
        listing: list[Future] = []

        def applied() -> None:
            # Prod's re-list for verify starts once the last copy and delete are done: it reads
            # only, so it runs beside the manifest's outcome write and the run-index update.
            listing.append(side.submit(engine.list_destination, planned.prefix, planned.snapshot))

        try:
            if len(ranges) > 1 and not dry_run:
                # A huge prefix: its key-range shards copy side by side, then the deletes run.
                parts = shards.promote_sharded(engine, planned, ranges, run_id)
                rows.extend(parts)
                row = shards.merged(parts)
                log.info("promoted %s in %d shards", prefix_line(row), len(parts))
            else:
                row = promote_prefix(engine, planned, run_id, dry_run=dry_run, applied=applied)
                rows.append(row)
        except (SyncFailedError, QAChangedError) as exc:
            errors.append(str(exc))
            if exc.result is not None and len(ranges) == 1:
                rows.append(failed_row(exc))
            return
        try:
            check_stale(engine, planned, dry_run=dry_run)
        except StalePrefixError as exc:  # the DAG's promote task fails here too: no verify, no pointer
            errors.append(str(exc))
            return
        if dry_run:
            return
        try:
            verified.append(
                verify_prefix(engine, planned.prefix, row, run_id, planned=planned, listing=next(iter(listing), None))
            )
        except VerificationError as exc:
            errors.append(str(exc))

    with (
        ThreadPoolExecutor(max_workers=min(4, len(plans)) or 1, thread_name_prefix="gl-prefix") as pool,
        ThreadPoolExecutor(max_workers=min(4, len(plans)) or 1, thread_name_prefix="gl-relist") as side,
    ):
        list(pool.map(lambda planned: run_one(planned, side), plans))
    if progress:
        progress.finish()
    total = summary(
        engine, rows, verified, run_id=run_id, dry_run=dry_run, duration=time.monotonic() - started, errors=errors
    )
    total["gates"] = [{k: g.get(k) for k in ("prefix", "contract", "contract_version", "passed")} for g in gates]
    total["plans"] = [pl.summary() for pl in plans]
    if dry_run:
        total["plan_lines"] = [line for pl in plans for line in pl.lines()]
    return total


__all__ = [
    "check_stale",
    "failed_gates",
    "gate",
    "plan",
    "preflight",
    "promote",
    "promote_prefix",
    "summary",
    "verify_prefix",
]

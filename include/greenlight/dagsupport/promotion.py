"""Task bodies of the ``artefact_promotion`` DAG; each calls the same library code as the CLI."""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from typing import Any

from airflow.sdk import Variable

from greenlight import contracts
from greenlight.dagsupport.runtime import airflow_api, mlflow_tracking_uri, s3_client, triaged
from greenlight.errors import GreenlightError
from greenlight.promotion import halt, run, shards
from greenlight.promotion.config import load_config
from greenlight.promotion.engine import Engine
from greenlight.promotion.gates import GateFailedError
from greenlight.promotion.progress import Progress
from greenlight.storage.lease import holding, release_run
from greenlight.storage.manifests import safe_name

log = logging.getLogger("greenlight.tasks.promotion")


def _engine(only: list[str] | None = None, progress=None) -> Engine:
    config = load_config().select(only or None)
    return Engine(config, s3_client(max_pool=config.workers), progress=progress)


def _leases(engine: Engine, run_id: str, wait: float, operation: str = "promote"):
    """Hold the run-scoped lease of each prod prefix of ``engine``'s config while a task works.

    The DAG run holds it from ``plan`` to ``summary``: each task takes it back (tasks of one run
    share its run id; mapped shards at once), renews it while it works and parks it at the end
    (not released), so no other writer gets in between two tasks; ``summary`` releases it."""
    destinations = [str(p.destination) for p in engine.config.prefixes]
    return holding(
        engine.client,
        engine.config.manifest_uri,
        destinations,
        run_id=run_id,
        operation=operation,
        wait=wait,
        scope="run",
    )


def _release_run(engine: Engine, run_id: str) -> list[str]:
    """The end of the run's hold on its prod prefixes (summary; a halted run)."""
    destinations = [str(p.destination) for p in engine.config.prefixes]
    return release_run(engine.client, engine.config.manifest_uri, destinations, run_id=run_id)


HALT_LEASE = "halt-variable"


def _halt_lease(engine: Engine, run_id: str, dry_run: bool, wait: float = 120.0):
    """The lease serialising read-modify-writes of the halt Variable (halts and resumes wait for it)."""
    if dry_run:
        return nullcontext()
    return holding(
        engine.client, engine.config.manifest_uri, [HALT_LEASE], run_id=f"{run_id}#halt", operation="halt", wait=wait
    )


@triaged
def preflight(only: list[str] | None) -> list[dict[str, Any]]:
    """Runbook §2 preconditions: config valid, both buckets answer, prod versioned, no QA run RUNNING."""
    return run.preflight(_engine(only), mlflow_tracking_uri())


@triaged
def plan(
    only: list[str] | None, *, run_id: str | None = None, dry_run: bool = True, wait: float = 0.0
) -> list[dict[str, Any]]:
    """List both sides of every prefix and apply the safety rules before anything changes.

    Any refusal fails the whole run here, so no prefix is promoted when one is refused. Unless a
    dry run, the QA listing is kept as the snapshot the gates validate and ``promote`` copies, and
    a prod prefix another run is writing refuses the run here (or waits ``lease_wait`` seconds).
    """
    engine = _engine(only)
    if dry_run or not run_id:
        plans = run.plan(engine)
    else:
        with _leases(engine, run_id, wait) as leases:
            try:
                plans = run.plan(engine, run_id=run_id, dry_run=False)
            except BaseException:
                # Refused (or failed) before anything changed: no other task of this run holds the
                # prefixes, so let the next writer in now rather than after the lease's expiry.
                leases.release()
                raise
    out = []
    for p in plans:
        ranges = shards.ranges_for(p)
        # A dry run logs the whole prefix's plan in one task: it is sharded only for real.
        sharded = len(ranges) > 1 and not dry_run
        out.append(
            {**p.summary(), "shard_count": len(ranges), "shards": [r.as_dict() for r in ranges] if sharded else []}
        )
    return out


def release_after_failure(context: dict[str, Any]) -> None:
    """The DAG run failed (every task has finished): end its hold on the prod prefixes now, so the
    next run or a CLI promote is not refused until the lease's expiry. Never raises."""
    try:
        run_id = context["dag_run"].run_id
        released = _release_run(_engine(), run_id)
        if released:
            log.warning("run %s failed: released its leases on %s", run_id, ", ".join(released))
    except Exception as exc:  # noqa: BLE001 - a callback must not fail; the leases expire on their own
        log.warning("could not release the leases of a failed run: %s", exc)


def shard_tasks(planned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``promote`` task per prefix, or per key-range shard of a prefix above ``shard_objects``."""
    out = []
    for p in planned:
        parts = p.get("shards") or []
        if not parts:
            out.append(p)
            continue
        log.info("%s: %d objects, promoted in %d shards", p["prefix"], p["objects_seen"], len(parts))
        out.extend({**p, "shard": part} for part in parts)
    return out


def task_label(planned: dict[str, Any]) -> str:
    """The mapped promote task's name in the UI: the prefix, and its shard when sharded."""
    shard = planned.get("shard")
    return planned["prefix"] + (f" shard {shard['index'] + 1}/{shard['count']}" if shard else "")


def gx_operator_validate(contract, qa_schema: dict, sample: list[dict] | None, now) -> dict[str, Any]:
    """Validate the contract with the GX provider's ``GXValidateDataFrameOperator`` (ephemeral context).

    The operator builds its DataFrame in ``__init__``, so it is created here, at run time, over the
    schema frame of the QA artefact (never at DAG parse time: GX takes seconds to import). Its
    ``describe_dict()`` result is turned into greenlight's gate format (which expectation, which
    check, observed vs expected).
    """
    # local: the GX provider imports great_expectations (~5 s); only this check needs it, never DAG parsing
    from great_expectations_provider.common.errors import GXValidationFailed
    from great_expectations_provider.operators.validate_dataframe import GXValidateDataFrameOperator

    frame = contracts.schema_frame(qa_schema, sample)
    built: dict[str, Any] = {}

    def expectations(context):
        built["suite"] = contracts.gx_suite(contract, now=now, sample=sample is not None, context=context)
        return built["suite"]

    pushed: dict[str, Any] = {}

    class _TaskInstance:  # receives the operator's XCom push; the gate task returns the converted result
        def xcom_push(self, key: str, value: Any) -> None:
            pushed["value"] = value

    operator = GXValidateDataFrameOperator(
        task_id=f"gx_{contract.name}",
        configure_dataframe=lambda: frame,
        configure_expectations=expectations,
        result_format="SUMMARY",
    )
    try:
        operator.execute({"ti": _TaskInstance()})
    except GXValidationFailed:
        pass  # the gate reports it; halting is the branch's decision
    described = pushed["value"]
    suite = built["suite"]
    checks = {}
    for exp in suite.expectations:
        cfg = exp.configuration.to_json_dict()
        checks[(cfg["type"], (cfg.get("kwargs") or {}).get("column"))] = (cfg.get("meta") or {}).get("greenlight_check")
    results = [
        contracts.gx_result_entry(
            item.get("expectation_type"),
            checks.get((item.get("expectation_type"), (item.get("kwargs") or {}).get("column"))),
            item.get("kwargs"),
            item.get("success"),
            item.get("result"),
        )
        for item in described.get("expectations", ())
    ]
    out = {
        "success": bool(described.get("success")),
        "suite": suite.name,
        "operator": "GXValidateDataFrameOperator",
        "statistics": described.get("statistics"),
        "results": results,
    }
    return json.loads(json.dumps(out, default=str))


@triaged
def gate(planned: dict[str, Any], *, run_id: str, dry_run: bool) -> dict[str, Any]:
    """Check one prefix's QA artefact against its contract and prod's schema (never changes prod)."""
    engine = _engine([planned["prefix"]])
    (prefix,) = engine.config.prefixes
    if dry_run:
        return run.gate(engine, prefix, run_id, dry_run=True, validate=gx_operator_validate)
    with _leases(engine, run_id, 0.0):  # the run keeps its prod prefixes from plan to summary
        return run.gate(engine, prefix, run_id, dry_run=False, validate=gx_operator_validate)


def decide(gates: list[dict[str, Any]]) -> str:
    """The branch: every gate passed -> promote; any failed -> halt_prod_consumers."""
    failed = run.failed_gates(gates)
    if failed:
        log.error("contract gate failed for %s: halting prod consumers, promoting nothing", ", ".join(failed))
        return "halt_prod_consumers"
    log.info("all %d contract gates passed: promoting", len(gates))
    return "promote"


@triaged
def halt_prod_consumers(gates: list[dict[str, Any]], *, run_id: str, dag_id: str, dry_run: bool) -> dict[str, Any]:
    """Pause the failed prefixes' consumer DAGs (REST API), record why, then fail the run (no retry).

    Rerunning it is safe: DAGs it paused earlier stay on its list; DAGs paused by someone else are
    never put on it, so a later ``resume_consumers`` will not unpause them. Crash-safe: the DAGs it
    is about to pause are recorded in the Variable first. The Variable's read-modify-write is done
    holding the ``halt-variable`` lease, so a concurrent resume (or halt) cannot lose the update.
    """
    gates = list(gates)
    engine = _engine([g["prefix"] for g in gates])
    consumers = halt.consumers_for(engine.config, gates)
    rel = f"promotions/{safe_name(run_id)}/halt.json"
    manifest = engine.manifests.uri(rel) if engine.manifests else None
    paused: dict[str, Any] = {"paused_by_greenlight": [], "already_paused": [], "missing": []}
    pause_error = None
    with _halt_lease(engine, run_id, dry_run):
        previous = Variable.get(halt.HALT_VARIABLE, default=None, deserialize_json=True)

        def record_intent(pausing: list[str]) -> None:
            intent = halt.record(
                run_id=run_id,
                dag_id=dag_id,
                gates=gates,
                paused={"paused_by_greenlight": pausing, "already_paused": [], "missing": []},
                manifest=manifest,
            )
            Variable.set(halt.HALT_VARIABLE, {**intent, "status": "pausing"}, serialize_json=True)
            log.warning("halt intent recorded in Variable %s: pausing %s", halt.HALT_VARIABLE, pausing)

        if consumers:
            try:
                paused = halt.pause(airflow_api(), consumers, previous, dry_run=dry_run, record_intent=record_intent)
            except GreenlightError as exc:
                if exc.retryable:
                    raise  # API unreachable: the task is retried; the gates' verdict stays in XCom
                pause_error = str(exc)
                log.error("could not pause consumers %s: %s", consumers, exc)
        else:
            log.warning("no consumers configured for the failed prefixes: nothing to pause")
        if not dry_run:
            record = halt.record(run_id=run_id, dag_id=dag_id, gates=gates, paused=paused, manifest=manifest)
            if engine.manifests:
                engine.manifests.write(rel, {**record, "gates": gates})
            Variable.set(halt.HALT_VARIABLE, record, serialize_json=True)
            log.error("halt recorded in Variable %s and %s", halt.HALT_VARIABLE, manifest)
    if not dry_run:  # the run ends here: its hold on the prod prefixes ends with it
        _release_run(_engine(), run_id)
    error = GateFailedError(gates)  # not retryable: ``triaged`` fails the task (and the run) at once
    tail = f"; paused consumers: {', '.join(paused['paused_by_greenlight']) or 'none'}"
    if pause_error:
        tail += f"; COULD NOT PAUSE {consumers}: {pause_error}"
    error.args = (str(error) + tail,)
    raise error


@triaged
def resume_consumers(*, run_id: str, enabled: bool, dry_run: bool) -> dict[str, Any]:
    """After a verified promotion: with ``resume_consumers`` on, unpause what a halt paused."""
    record = Variable.get(halt.HALT_VARIABLE, default=None, deserialize_json=True)
    if not record or not record.get("halted"):
        log.info("no halt in force: nothing to resume")
        return {"resumed": [], "halt": None}
    paused = record.get("paused_by_greenlight") or []
    if not enabled or dry_run:
        log.warning(
            "halt of run %s is still in force; consumers %s stay paused. Trigger with resume_consumers=true "
            "(after a clean promotion) to unpause them",
            record.get("run_id"),
            paused,
        )
        return {"resumed": [], "halt": record.get("run_id")}
    with _halt_lease(_engine(), run_id, dry_run):
        record = Variable.get(halt.HALT_VARIABLE, default=None, deserialize_json=True)  # read again, held
        if not record or not record.get("halted"):
            log.info("the halt was lifted meanwhile: nothing to resume")
            return {"resumed": [], "halt": None}
        outcome = halt.resume(airflow_api(), record, run_id=run_id)
        Variable.set(halt.HALT_VARIABLE, outcome["record"], serialize_json=True)
    log.warning("halt of run %s lifted; resumed %s", record.get("run_id"), outcome["resumed"])
    return {"resumed": outcome["resumed"], "halt": record.get("run_id")}


@triaged
def promote(planned: dict[str, Any], *, run_id: str, dry_run: bool, wait: float = 0.0) -> dict[str, Any]:
    """Promote one prefix (one mapped task per prefix): re-plan, re-check, copy, delete, manifest.

    Holds the prod prefix's lease. Re-planning makes a cleared-and-rerun task converge: it does
    only what is still missing and merges into the same run's manifest, keeping the first attempt's
    pre-promotion versions. What it copies must be the QA snapshot the ``plan`` task recorded and
    the gates validated: a QA object changed, added or removed since fails the prefix without retry
    ("QA changed after validation"); copies carry If-Match on the snapshot's ETags.
    """
    progress = Progress(tty=False, interval=10.0)
    engine = _engine([planned["prefix"]], progress=progress)
    (prefix,) = engine.config.prefixes
    if planned.get("shard") and not dry_run:
        rng = shards.KeyRange.from_dict(planned["shard"])
        with _leases(engine, run_id, wait) as leases:
            leases.check()
            row = shards.promote_range(engine, prefix, rng, run_id)
        log.info("promoted %s: copied=%d (deletes run after every shard copied)", task_label(planned), row["copied"])
        return row
    if dry_run:
        current = engine.plan(prefix)
        engine.check(current)
        return run.promote_prefix(engine, current, run_id, dry_run=True)
    with _leases(engine, run_id, wait) as leases:
        current = engine.plan(prefix)
        engine.check(current)
        engine.check_snapshot(current, run_id)
        progress.start(len(current.copies) + len(current.deletes), current.bytes_to_copy)
        leases.check()
        row = run.promote_prefix(engine, current, run_id, dry_run=False)
        progress.finish()
    run.check_stale(engine, current, dry_run=dry_run)
    return row


@triaged
def verify(results: list[dict[str, Any]], *, run_id: str, dry_run: bool, wait: float = 0.0) -> list[dict[str, Any]]:
    """Runbook §4 verification, done for every object: prod equals QA for each promoted prefix.
    Holds the prod prefixes' leases: it moves their current pointers."""
    if dry_run:
        log.info("dry run: nothing was changed, nothing to verify")
        return []
    engine = _engine([r["prefix"] for r in results])
    by_prefix: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_prefix.setdefault(r["prefix"], []).append(r)
    checks = []
    with _leases(engine, run_id, wait) as leases:
        for p in engine.config.prefixes:
            rows = by_prefix.get(p.label, [])
            if not any(r.get("shard") for r in rows):
                checks.append(run.verify_prefix(engine, p, rows[0] if rows else {}, run_id))
                continue
            # Every shard copied (this task runs only after all of them succeeded): now the deletes,
            # each into its shard's manifest part, then the whole prefix is verified.
            ranges = [shards.KeyRange.from_dict(r["shard"]) for r in rows]
            leases.check()
            after = engine.plan(p)
            rows = shards.delete_after_copies(engine, after, ranges, run_id, rows)
            engine.check_stale(after)  # nothing copied or deleted and prod old: stale, as unsharded
            merged = shards.merged(rows)
            check = run.verify_prefix(engine, p, merged, run_id)
            check.update(shard_rows=rows, copied=merged["copied"], deleted=merged["deleted"])
            check["manifest"] = merged["manifest"]
            checks.append(check)
    return checks


def asset_events(results: list[dict[str, Any]], checks: list[dict[str, Any]], *, run_id: str) -> list[dict[str, Any]]:
    """One Asset event per verified prefix: the prod prefix URI and what this run did to it."""
    by_prefix = {r["prefix"]: r for r in results}
    events = []
    for check in checks:
        row = check if check.get("shard_rows") else by_prefix.get(check["prefix"], {})
        events.append(
            {
                "uri": check["destination"],
                "name": check.get("asset_name") or check["destination"],
                "extra": {
                    "run_id": run_id,
                    "source": check["prefix"],
                    "objects": check["objects"],
                    "copied": row.get("copied", 0),
                    "deleted": row.get("deleted", 0),
                    "manifest": row.get("manifest"),
                },
            }
        )
    return events


@triaged
def summary(
    results: list[dict[str, Any]], verified: list[dict[str, Any]], *, run_id: str, dry_run: bool
) -> dict[str, Any]:
    """The final summary line (what the runbook's ``qa_to_prod_done`` line reported) and run index."""
    rows = list(results)
    verified = list(verified)
    sharded = {c["prefix"]: c["shard_rows"] for c in verified if c.get("shard_rows")}
    if sharded:  # the shard rows as verify completed them (their deletes ran there)
        rows = [r for r in rows if r["prefix"] not in sharded] + [r for v in sharded.values() for r in v]
    engine = _engine([r["prefix"] for r in rows])
    duration = sum(float(r.get("duration_s") or 0) for r in rows)
    total = run.summary(engine, rows, verified, run_id=run_id, dry_run=dry_run, duration=duration)
    if not dry_run:
        total["leases_released"] = _release_run(engine, run_id)
    return total

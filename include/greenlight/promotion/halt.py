"""Halting and resuming prod consumers after a failed contract gate (no Airflow imports).

The halt record is the one place that says why prod inputs are frozen and which DAGs greenlight
paused; the DAG keeps it in an Airflow Variable (``greenlight_promotion_halt``) that consumers can
check, and in the run's manifests. Resuming unpauses only the DAGs the record says greenlight
paused: a DAG an operator had paused by hand stays paused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from greenlight.promotion.config import PromotionConfig
from greenlight.storage.manifests import utcnow

log = logging.getLogger("greenlight.promotion.halt")

HALT_VARIABLE = "greenlight_promotion_halt"
HALT_KIND = "greenlight.halt/v1"


def consumers_for(config: PromotionConfig, gates: list[dict[str, Any]]) -> list[str]:
    """The consumer DAGs configured for the prefixes whose gate failed (config order, no repeats)."""
    failed = {g["prefix"] for g in gates if not g["passed"]}
    out: list[str] = []
    for p in config.prefixes:
        if p.label in failed:
            out += [d for d in p.settings.consumers if d not in out]
    return out


def pause(
    api,
    dag_ids: list[str],
    previous: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    record_intent: Callable[[list[str]], None] | None = None,
) -> dict[str, Any]:
    """Pause each DAG that is running; remember which ones greenlight paused (idempotent on rerun).

    Crash-safe: before the first pause, ``record_intent`` is called with every DAG greenlight is
    about to pause (plus those an earlier halt paused), so that a retry after a crash between
    pausing and recording still knows they are greenlight's to resume."""
    ours_before = set((previous or {}).get("paused_by_greenlight", ()) if (previous or {}).get("halted") else ())
    paused: list[str] = []
    already: list[str] = []
    missing: list[str] = []
    running: list[str] = []
    for dag_id in dag_ids:
        info = api.get_dag(dag_id)
        if info is None:
            missing.append(dag_id)
            log.error("consumer DAG %s does not exist in Airflow: nothing to pause", dag_id)
        elif info.get("is_paused"):
            (paused if dag_id in ours_before else already).append(dag_id)
            log.info("consumer DAG %s is already paused", dag_id)
        else:
            running.append(dag_id)
    if running and not dry_run and record_intent is not None:
        record_intent(sorted(ours_before | set(paused) | set(running)))
    for dag_id in running:
        if dry_run:
            log.info("(dry run) would pause consumer DAG %s", dag_id)
        else:
            api.set_paused(dag_id, True)
            log.warning("paused consumer DAG %s", dag_id)
        paused.append(dag_id)
    # Keep DAGs an earlier halt paused that this halt does not name: they are still ours to resume.
    paused += [d for d in sorted(ours_before) if d not in paused and d not in dag_ids]
    return {"paused_by_greenlight": paused, "already_paused": already, "missing": missing}


def record(
    *, run_id: str, dag_id: str, gates: list[dict[str, Any]], paused: dict[str, Any], manifest: str | None
) -> dict[str, Any]:
    failed = [g for g in gates if not g["passed"]]
    return {
        "kind": HALT_KIND,
        "halted": True,
        "run_id": run_id,
        "dag_id": dag_id,
        "halted_at": utcnow(),
        "prefixes": [g["prefix"] for g in failed],
        "destinations": [g["destination"] for g in failed],
        "reasons": [r for g in failed for r in g["reasons"]][:50],
        "manifest": manifest,
        **paused,
    }


def resume(api, halt: dict[str, Any] | None, *, run_id: str) -> dict[str, Any]:
    """Unpause the DAGs a halt paused (and only those); returns the record to store afterwards."""
    if not halt or not halt.get("halted"):
        return {"resumed": [], "record": halt}
    resumed: list[str] = []
    for dag_id in halt.get("paused_by_greenlight", ()):
        info = api.get_dag(dag_id)
        if info is None:
            log.warning("consumer DAG %s no longer exists: nothing to resume", dag_id)
            continue
        if info.get("is_paused"):
            api.set_paused(dag_id, False)
            log.warning("resumed consumer DAG %s (paused by halt of run %s)", dag_id, halt.get("run_id"))
        resumed.append(dag_id)
    after = {
        **halt,
        "halted": False,
        "resumed_at": utcnow(),
        "resumed_by": run_id,
        "resumed": resumed,
        "paused_by_greenlight": [],
    }
    return {"resumed": resumed, "record": after}

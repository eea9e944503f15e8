"""The summary hook: every ``backfill`` run of a greenlight DAG reports its partition itself.

So a backfill started from the UI's Backfill form (or ``airflow backfill create``, or the REST API)
has ``backfills/airflow-<N>/summary.json`` under the task manifest root without anyone running
``greenlight backfill --follow N``. :func:`greenlight.dagsupport.defaults.add_run_check` wires two
places:

* the final ``check_run`` task, once the run check passed: the partition's record says
  ``success`` with the timings and tries from the run's manifests;
* every task's ``on_failure_callback`` (a task failed for good: no retry left, or a failure that is
  not retried): the record says ``failed`` and names the task and its error. ``check_run`` itself
  failing (an incomplete run) is such a task.

Then the summary is updated from every record of the backfill (conditional writes:
:class:`greenlight.backfill.records.SummaryFiles`). Which backfill a run belongs to is asked of the
REST API (connection ``airflow_api``): the task context does not carry the run's ``backfill_id``.

Runs of other types (scheduled, manual, asset-triggered) write nothing. Like the task manifests, this
never fails a task: a summary that cannot be written is logged as a warning (and ``greenlight
backfill --follow N`` rebuilds it from Airflow and the manifests). Without the ``airflow_api``
connection or with task manifests turned off there is no hook summary.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from greenlight.backfill.airflowapi import Airflow, backfill_of_run
from greenlight.backfill.plan import iso, summary_relpath
from greenlight.backfill.records import (
    SummaryFiles,
    airflow_summary,
    airflow_summary_id,
    finish,
    is_backfill_run,
    merge_records,
    observe_in_flight,
    partition_record,
)
from greenlight.dagsupport.runtime import airflow_api
from greenlight.dagsupport.taskmanifest import manifest_root, store_for
from greenlight.redact import clean_message
from greenlight.storage.manifests import utcnow
from greenlight.triage import classify

log = logging.getLogger("greenlight.dagsupport.backfillsummary")


def report_partition(record: dict[str, Any] | None, *, api: Any = None) -> str | None:
    """Write a partition's record (:func:`greenlight.backfill.records.partition_record`) under the
    Airflow backfill its run belongs to, and fold it into that backfill's summary.

    Returns the summary's location; None when there is no record (not a backfill run) or nothing
    could be written (logged). ``api``: an :class:`greenlight.dagsupport.api.AirflowApi` (default:
    from the ``airflow_api`` connection)."""
    if record is None:
        return None
    dag_id, run_id = record["dag_id"], record["run_id"]
    try:
        root = manifest_root()
        if root is None:
            return None
        if api is None:
            api = airflow_api()
        airflow = Airflow(api)
        backfill = backfill_of_run(airflow.backfills(dag_id), record["partition"])
        if backfill is None:
            log.warning("backfill summary: no Airflow backfill of %s covers %s", dag_id, record["partition"])
            return None
        files = SummaryFiles(store_for(root))
        # Observed as it is written (not when it was built, before the REST call above): another
        # run that lists this run as in flight after this moment must not outrank the record.
        record = {**record, "airflow_backfill_id": int(backfill["id"]), "observed": utcnow()}
        files.write_record(record)
        asked = utcnow()
        runs = airflow.runs(dag_id, iso(backfill["from_date"]), iso(backfill["to_date"]))

        def mutate(current: dict[str, Any] | None) -> dict[str, Any]:
            summary = airflow_summary(backfill, current)
            merge_records(summary, files.records(backfill["id"]))
            observe_in_flight(summary, runs, exclude_run=run_id, observed=asked)
            return finish(summary)

        rel = summary_relpath(airflow_summary_id(backfill["id"]))
        summary = files.update(rel, mutate)
        where = files.store.uri(rel)
        log.info(
            "backfill summary %s: partition %s %s (%s)",
            where,
            record["partition"],
            record["state"],
            summary.get("counts"),
        )
        return where
    except Exception as exc:  # noqa: BLE001 - the summary must never fail the run it describes
        log.warning("backfill summary not updated for %s %s: %s", dag_id, run_id, clean_message(exc))
        return None


def on_task_failure(context: Any) -> None:
    """``on_failure_callback`` of every task of a greenlight DAG: a backfill run's partition failed."""
    dag_run = context.get("dag_run")
    if not is_backfill_run(dag_run):
        return
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    task_id = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", -1)
    name = f"{task_id}.{map_index}" if isinstance(map_index, int) and map_index >= 0 else task_id
    try:
        kind = classify(error).kind
    except Exception:  # noqa: BLE001 - the error's class is a detail of the record
        kind = None
    first_error = {
        "task": name,
        "try_number": getattr(ti, "try_number", None),
        "kind": kind,
        "type": type(error).__name__ if isinstance(error, BaseException) else None,
        "message": (clean_message(error) or "")[:500],
    }
    start, end = getattr(ti, "start_date", None), getattr(ti, "end_date", None) or datetime.now(UTC)
    view = {"start": iso(start), "end": iso(end)}
    if isinstance(start, datetime):
        view["duration_s"] = round((end - start).total_seconds(), 3)  # the failed task's own time
    report_partition(
        partition_record(
            dag_run,
            "failed",
            seen_by="task failure",
            view=view,
            first_error=first_error,
            tries=getattr(ti, "try_number", None),
        )
    )

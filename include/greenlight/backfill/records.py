"""Per-partition records of an Airflow backfill, and its summary merged from them.

Every Airflow backfill ``N`` of a greenlight DAG gets ``backfills/airflow-<N>/summary.json`` under
the task manifest root, however it was started (``greenlight backfill``, the UI's Backfill form,
``airflow backfill create``, ``POST /api/v2/backfills``): the runs write it themselves. Each run of
the backfill writes one record for its partition,

    backfills/airflow-<N>/partitions/<partition>.json

(its final ``check_run`` task on success, the task that failed on failure; see
:mod:`greenlight.dagsupport.backfillsummary`), then folds every record into the summary. Parallel
runs update the one summary object safely: the read-modify-write is conditional
(:meth:`greenlight.storage.manifests.ManifestStore.write_if`: S3 ``If-Match`` on the ETag read,
``If-None-Match: *`` for the first write; the same compare-and-write under a lock file on a local
root) and retried when another run wrote first, and whoever writes last has listed the records after every earlier writer's own record was
in place, so no partition is lost. The records stay the truth: a reader that merges them again
(``greenlight backfill --follow N``) gets the same summary.

Within one partition the newest observation wins: a record carries ``observed`` (when it was
written) and so does a summary entry the CLI refreshed from Airflow and the manifests, so a partition
that was cleared and is running again is not shown with its older failure, and a record does not
undo a newer verdict.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenlight.backfill.plan import finish_counts, iso, new_summary, overall, partition_entry
from greenlight.errors import ManifestError
from greenlight.storage.manifests import ManifestStore, safe_name, utcnow
from greenlight.storage.s3 import list_pages

RECORD_SCHEMA = "greenlight.backfill-partition/1"
#: Conditional writes tried before giving up (each conflict means another run just wrote).
UPDATE_TRIES = 12
#: ``seen_by`` of the entries that come from a run's own record.
RECORD_SOURCES = ("check_run", "task failure")
#: What a record sets in the partition's summary entry.
RECORD_FIELDS = ("state", "run_id", "tries", "start", "end", "duration_s", "first_error", "missing", "observed")


def airflow_summary_id(airflow_id: int) -> str:
    """greenlight's backfill id for Airflow backfill ``airflow_id`` (``airflow-<N>``)."""
    return f"airflow-{int(airflow_id)}"


def records_prefix(airflow_id: int) -> str:
    return f"backfills/{airflow_summary_id(airflow_id)}/partitions/"


def record_relpath(airflow_id: int, partition: str) -> str:
    return records_prefix(airflow_id) + safe_name(partition) + ".json"


# ------------------------------------------------------------------------------- plain logic
def run_value(dag_run: Any, name: str) -> Any:
    """Field ``name`` of a DAG run (Airflow's object from the task context, or a REST API dict)."""
    value = dag_run.get(name) if isinstance(dag_run, dict) else getattr(dag_run, name, None)
    return getattr(value, "value", value)  # enums (run type) as their string


def is_backfill_run(dag_run: Any) -> bool:
    return (
        dag_run is not None
        and run_value(dag_run, "run_type") == "backfill"
        and bool(run_value(dag_run, "logical_date"))
    )


def partition_record(
    dag_run: Any,
    state: str,
    *,
    seen_by: str,
    view: dict[str, Any] | None = None,
    first_error: dict[str, Any] | None = None,
    tries: int | None = None,
) -> dict[str, Any] | None:
    """The record of ``dag_run``'s partition: ``state`` is ``success`` (the run check passed) or
    ``failed``; None when the run is no ``backfill`` run (nothing to record).

    ``view`` is :func:`greenlight.backfill.plan.manifest_view` of the run's manifests (timings,
    tries, what is missing); ``first_error`` the failed task and its error when a task failed.
    ``airflow_backfill_id`` stays None until the run's Airflow backfill is known, and ``observed``
    is stamped again when the record is written
    (:func:`greenlight.dagsupport.backfillsummary.report_partition` asks the REST API, then writes)."""
    if not is_backfill_run(dag_run):
        return None
    view = view or {}
    return {
        "schema": RECORD_SCHEMA,
        "airflow_backfill_id": None,
        "dag_id": run_value(dag_run, "dag_id"),
        "partition": iso(run_value(dag_run, "logical_date")),
        "run_id": run_value(dag_run, "run_id"),
        "state": state,
        "tries": tries if tries is not None else view.get("tries"),
        "start": view.get("start"),
        "end": view.get("end"),
        "duration_s": view.get("duration_s"),
        "first_error": first_error or (view.get("first_error") if state == "failed" else None),
        "missing": list(view.get("missing") or []) if state == "failed" else [],
        "seen_by": seen_by,
        "observed": utcnow(),
    }


def apply_record(entry: dict[str, Any], record: dict[str, Any]) -> bool:
    """Set ``entry`` from ``record`` unless the entry holds a newer observation; True if applied."""
    if str(entry.get("observed") or "") > str(record.get("observed") or ""):
        return False
    for key in RECORD_FIELDS:
        if key in record and (record[key] is not None or key in ("first_error", "missing")):
            entry[key] = record[key]
    entry["airflow_state"] = record["state"]  # the run ends so: check_run is its only leaf
    entry["seen_by"] = record.get("seen_by")
    return True


def merge_records(summary: dict[str, Any], records: list[dict[str, Any]]) -> int:
    """Fold ``records`` into ``summary``'s partitions (newest observation wins); how many applied."""
    applied = 0
    for record in sorted(records, key=lambda r: str(r.get("observed") or "")):
        if record.get("partition"):
            applied += apply_record(partition_entry(summary, record["partition"]), record)
    return applied


def observe_in_flight(
    summary: dict[str, Any], runs: list[dict[str, Any]], *, exclude_run: str | None, observed: str | None = None
) -> None:
    """Partitions whose ``backfill`` run is queued or running (from ``GET /dagRuns`` at ``observed``),
    so the summary lists every partition of the backfill before each has a record.

    A partition whose entry comes from a record of that same run is left alone: the run wrote its
    verdict a moment before Airflow finishes it, so "running" there only means "finishing" (a run
    cleared and running again shows its last verdict until it records the new one)."""
    observed = observed or utcnow()
    for run in runs:
        if run.get("run_type") != "backfill" or run.get("state") not in ("queued", "running"):
            continue
        if run.get("dag_run_id") == exclude_run or not run.get("logical_date"):
            continue
        entry = partition_entry(summary, iso(run["logical_date"]))
        if entry.get("seen_by") in RECORD_SOURCES and entry.get("run_id") == run["dag_run_id"]:
            continue
        if str(entry.get("observed") or "") <= observed:
            entry.update(state=run["state"], airflow_state=run["state"], run_id=run["dag_run_id"], observed=observed)


def airflow_summary(backfill: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """The summary of Airflow backfill ``backfill`` (a ``GET /backfills/{id}`` dict): ``current``
    or a new one, naming the backfill."""
    if current is not None:
        return current
    summary = new_summary(
        airflow_summary_id(backfill["id"]),
        backfill["dag_id"],
        backfill["from_date"],
        backfill["to_date"],
        max_parallel=backfill.get("max_active_runs"),
        conf=backfill.get("dag_run_conf"),
        started_by="airflow",
    )
    summary["airflow_backfills"].append(
        {
            "id": int(backfill["id"]),
            "from_date": iso(backfill.get("from_date")),
            "to_date": iso(backfill.get("to_date")),
            "reprocess_behavior": backfill.get("reprocess_behavior"),
            "max_active_runs": backfill.get("max_active_runs"),
            "created_at": iso(backfill.get("created_at")),
        }
    )
    return summary


def finish(summary: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """Counts, overall status (``status`` when given) and ``updated``: before every write."""
    finish_counts(summary)
    summary["status"] = status or overall(summary)
    summary["updated"] = utcnow()
    return summary


# ----------------------------------------------------------------------------------- storage
class SummaryFiles:
    """Records and summaries under one task manifest root (a local folder or ``s3://``)."""

    def __init__(self, store: ManifestStore):
        self.store = store

    def write_record(self, record: dict[str, Any]) -> str:
        return self.store.write(record_relpath(record["airflow_backfill_id"], record["partition"]), record)

    def records(self, airflow_id: int) -> list[dict[str, Any]]:
        """Every partition record of Airflow backfill ``airflow_id`` (none yet: empty)."""
        prefix = records_prefix(airflow_id)
        if self.store.s3 is not None:
            s3 = self.store.s3
            names = [
                obj["Key"][len(s3.prefix) :]
                for page in list_pages(self.store.client, s3.bucket, s3.prefix + prefix)
                for obj in page.get("Contents", ())
                if obj["Key"].endswith(".json")
            ]
        else:
            folder = Path(self.store.uri(prefix.rstrip("/")))
            names = [prefix + p.name for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        docs = (self.store.read(name) for name in names)
        return [d for d in docs if d and d.get("schema") == RECORD_SCHEMA]

    def update(self, relpath: str, mutate: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        """Read ``relpath``, ``mutate`` it (None: no document yet), write it back only if nobody
        wrote in between (:meth:`ManifestStore.write_if`); on a conflict read again and repeat.
        Returns what was written."""
        for attempt in range(UPDATE_TRIES):
            current, etag = self.store.read_tagged(relpath) or (None, None)
            doc = mutate(current)
            if self.store.write_if(relpath, doc, etag=etag) is not None:
                return doc
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # another run wrote: read again
        raise ManifestError(f"{self.store.uri(relpath)} kept changing: not updated after {UPDATE_TRIES} tries")

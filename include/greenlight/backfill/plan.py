"""Resumable backfills: which partitions to run, and the summary an operator reads.

Runbook 003 ("Backfills (First-Class)"): a backfill runs the same DAG as the daily runs over a range
of partitions; ``--resume`` skips the partitions whose manifests show success and retries only the
others; ``backfills/<backfill_id>/summary.json`` (under the task manifest root) says, partition by
partition, what happened. The runs themselves are Airflow 3 backfills (``POST /api/v2/backfills``),
so the scheduler, pools and the UI see ordinary ``backfill`` runs.

This module is the plain logic (no Airflow import, no network): partitions are ISO-8601 UTC logical
dates (``2026-01-01T00:00:00Z``); the Airflow side comes in as dicts from the REST API and the
task manifests as dicts from :class:`greenlight.runcheck.ManifestRoot`. The CLI
(:mod:`greenlight.backfill.runner`, behind ``greenlight backfill``) does the I/O.

How ``--resume`` decides (see docs/backfills.md): the manifests are the truth, Airflow's run states
only a shortcut. A partition is *done* when the task manifests of its newest run pass the run check
(:func:`greenlight.runcheck.check_run`), whatever Airflow says (after a metadata DB reset Airflow
knows no run at all). When the partitions to redo are exactly those Airflow's own
``reprocess_behavior=failed`` would rerun (failed or missing runs), one Airflow backfill over the
whole range does it; otherwise each stretch of consecutive partitions to redo becomes its own
Airflow backfill with ``reprocess_behavior=completed`` (one after the other: Airflow allows one
active backfill per DAG), so a partition with successful manifests is never rerun.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from greenlight.storage.manifests import safe_name, utcnow

SCHEMA = "greenlight.backfill/1"
#: Airflow run states of a partition that is still being worked on.
IN_FLIGHT = ("queued", "running")
FINISHED = ("success", "failed")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadRange(ValueError):
    """A start/end that cannot be a backfill range (the CLI refuses it, exit 2)."""


# ----------------------------------------------------------------------------- dates and ids
def parse_bound(text: str, *, end: bool, what: str) -> datetime:
    """``--start`` / ``--end`` as an aware UTC datetime.

    A bare day ``YYYY-MM-DD`` covers the whole day: the start is its 00:00, the end its 23:59:59,
    so ``--start 2026-01-01 --end 2026-01-06`` backfills six daily partitions (and 144 hourly
    ones). A full ISO-8601 timestamp is taken as given (UTC when it names no offset).
    """
    text = (text or "").strip()
    if _DAY.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise BadRange(f"{what} {text!r}: {exc}") from None
        return datetime.combine(day, time(23, 59, 59) if end else time(0, 0), tzinfo=UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRange(f"{what} {text!r}: expected YYYY-MM-DD or an ISO-8601 timestamp") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def check_range(start: datetime, end: datetime, *, now: datetime | None = None) -> None:
    if end < start:
        raise BadRange(f"--end {label(end)} is before --start {label(start)}")
    if start > (now or datetime.now(UTC)):
        raise BadRange(f"--start {label(start)} is in the future: there is nothing to backfill yet")


def iso(value: Any) -> str | None:
    """A timestamp (ISO string or datetime) as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC; None stays None."""
    if value in (None, ""):
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def label(moment: datetime) -> str:
    """A range bound as people write it: the day when it is a day's first or last second."""
    moment = moment.astimezone(UTC)
    if moment.time() in (time(0, 0), time(23, 59, 59)):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H%MZ")


def default_backfill_id(dag_id: str, start: datetime, end: datetime) -> str:
    """``<dag_id>__<start>__<end>``: the same command (and ``--resume``) finds the same summary."""
    return f"{dag_id}__{label(start)}__{label(end)}"


def summary_relpath(backfill_id: str) -> str:
    """Where the summary lives under the task manifest root: ``backfills/<backfill_id>/summary.json``."""
    return f"backfills/{safe_name(backfill_id)}/summary.json"


# ------------------------------------------------------------------------- manifests per partition
def runs_by_partition(runs: dict[str, dict[str, dict]]) -> dict[str, tuple[str, dict[str, dict]]]:
    """``{run_folder: {name: manifest}}`` -> ``{partition: (run_id, manifests)}`` keeping, for each
    logical date, the newest run (by its first task start): that run is the partition's state."""
    best: dict[str, tuple[str, str, dict]] = {}
    for folder, docs in runs.items():
        if not docs:
            continue
        first = next(iter(docs.values()))
        partition = iso(first.get("logical_date"))
        if partition is None:  # a manual run without a logical date is no partition
            continue
        started = min(str(d.get("start") or d.get("updated") or "") for d in docs.values())
        run_id = str(first.get("run_id") or folder)
        if partition not in best or started > best[partition][0]:
            best[partition] = (started, run_id, docs)
    return {p: (rid, docs) for p, (_, rid, docs) in best.items()}


_DATED_RUN = re.compile(r"^(scheduled|backfill)__(\d{4}-\d{2}-\d{2})")


def may_hold(folder: str, start: str, end: str) -> bool:
    """Can run folder ``folder`` hold a partition in ``[start, end]``? Scheduled and backfill run
    ids start with their logical date, so the others of a long history are not read; any other run
    (manual, asset-triggered, a hand-picked id) may have any logical date and is read."""
    match = _DATED_RUN.match(folder)
    if not match:
        return True
    return start[:10] <= match.group(2) <= end[:10]


def first_error(manifests: dict[str, dict]) -> dict[str, Any] | None:
    """The earliest failed task of a run (by end time): task, try, error kind and message."""
    failed = [
        (str(doc.get("end") or doc.get("updated") or ""), name, doc)
        for name, doc in manifests.items()
        if doc.get("state") in ("failed", "up_for_retry") and doc.get("error")
    ]
    if not failed:
        return None
    _, name, doc = min(failed)
    error = doc["error"]
    return {
        "task": name,
        "try_number": doc.get("try_number"),
        "kind": error.get("kind"),
        "type": error.get("type"),
        "message": str(error.get("message") or "")[:500],
    }


def manifest_view(report: dict[str, Any], manifests: dict[str, dict]) -> dict[str, Any]:
    """What the manifests of one run say about its partition (``report`` from ``check_run``)."""
    starts = [d["start"] for d in manifests.values() if d.get("start")]
    ends = [d["end"] for d in manifests.values() if d.get("end")]
    tries = [d["try_number"] for d in manifests.values() if isinstance(d.get("try_number"), int)]
    start, end = (min(starts) if starts else None), (max(ends) if ends else None)
    duration = None
    if start and end:
        duration = round((_dt(end) - _dt(start)).total_seconds(), 3)
    return {
        "complete": bool(report.get("complete")),
        "run_id": report.get("run_id"),
        "tries": max(tries) if tries else None,
        "start": iso(start),
        "end": iso(end),
        "duration_s": duration,
        "first_error": first_error(manifests),
        "missing": list(report.get("missing") or [])[:10],
    }


def _dt(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------- the plan
def latest_runs(dag_runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Airflow's newest run per logical date (the one its backfill's reprocess rules look at)."""
    out: dict[str, dict[str, Any]] = {}
    for run in dag_runs:
        partition = iso(run.get("logical_date"))
        if partition is None:
            continue
        key = (run.get("start_date") is not None, str(run.get("start_date") or ""))
        current = out.get(partition)
        if current is None or key > (current.get("start_date") is not None, str(current.get("start_date") or "")):
            out[partition] = run
    return out


def airflow_would_rerun(state: str | None, behavior: str) -> bool:
    """Would an Airflow backfill with ``reprocess_behavior=behavior`` make a run for a partition
    whose newest run is in ``state`` (None: no run)? Mirrors Airflow 3.3's rule: an in-flight run
    is never touched; ``none`` runs missing partitions only, ``failed`` adds failed ones,
    ``completed`` adds successful ones too."""
    if state is None:
        return True
    if state not in FINISHED:
        return False
    if behavior == "completed":
        return True
    return behavior == "failed" and state == "failed"


def segments(partitions: list[str], todo: set[str]) -> list[list[str]]:
    """Stretches of consecutive partitions (in range order) that are all in ``todo``."""
    out: list[list[str]] = []
    current: list[str] = []
    for p in partitions:
        if p in todo:
            current.append(p)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def plan_resume(
    partitions: list[str],
    done: set[str],
    airflow_state: dict[str, str | None],
) -> dict[str, Any]:
    """The Airflow backfills that rerun exactly the partitions not ``done`` (by manifests).

    Returns ``{"todo", "skipped", "in_flight", "backfills": [{"from", "to", "reprocess_behavior",
    "partitions"}], "reason"}``. Partitions whose newest run is queued or running are left alone
    (Airflow would not touch them either) and listed as ``in_flight``.
    """
    in_flight = [p for p in partitions if airflow_state.get(p) in IN_FLIGHT]
    todo = [p for p in partitions if p not in done and p not in in_flight]
    skipped = [p for p in partitions if p in done]
    plan: dict[str, Any] = {"todo": todo, "skipped": skipped, "in_flight": in_flight, "backfills": []}
    if not todo:
        plan["reason"] = "every partition's manifests show success (or it is still running): nothing to rerun"
        return plan
    airflow_failed = {p for p in partitions if airflow_would_rerun(airflow_state.get(p), "failed")}
    if airflow_failed == set(todo):
        plan["backfills"] = [
            {"from": partitions[0], "to": partitions[-1], "reprocess_behavior": "failed", "partitions": todo}
        ]
        plan["reason"] = (
            "the partitions to redo are exactly Airflow's failed or missing runs: one backfill over the "
            "range with reprocess_behavior=failed"
        )
        return plan
    plan["backfills"] = [
        {"from": seg[0], "to": seg[-1], "reprocess_behavior": "completed", "partitions": seg}
        for seg in segments(partitions, set(todo))
    ]
    disagree = sorted(airflow_failed ^ set(todo))
    plan["reason"] = (
        f"manifests and Airflow's run states disagree on {len(disagree)} partition(s) "
        f"({', '.join(disagree[:5])}{'…' if len(disagree) > 5 else ''}): the manifests decide; "
        f"{len(plan['backfills'])} backfill(s) over the stretches to redo, reprocess_behavior=completed"
    )
    return plan


# ------------------------------------------------------------------------------ the summary
def new_summary(backfill_id: str, dag_id: str, start: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "backfill_id": backfill_id,
        "dag_id": dag_id,
        "start": iso(start),
        "end": iso(end),
        "created": utcnow(),
        "updated": utcnow(),
        "status": "planned",
        "attempts": [],
        "airflow_backfills": [],
        "partitions": [],
        "counts": {},
        **extra,
    }


def partition_entry(summary: dict[str, Any], partition: str) -> dict[str, Any]:
    for entry in summary["partitions"]:
        if entry["partition"] == partition:
            return entry
    entry = {
        "partition": partition,
        "state": "pending",
        "airflow_state": None,
        "run_id": None,
        "tries": None,
        "runs_by_greenlight": 0,
        "start": None,
        "end": None,
        "duration_s": None,
        "first_error": None,
    }
    summary["partitions"].append(entry)
    summary["partitions"].sort(key=lambda e: e["partition"])
    return entry


def partition_state(airflow_state: str | None, view: dict[str, Any] | None, *, trust_manifests: bool) -> str:
    """One word per partition: ``success`` / ``failed`` / ``running`` / ``queued`` / ``pending``.

    With manifests (greenlight DAGs) a finished partition is ``success`` only when its manifests
    pass the run check; a DAG without manifests is judged by Airflow's run state alone."""
    if airflow_state in IN_FLIGHT:
        return airflow_state
    if trust_manifests:
        if view is not None and view["complete"]:
            return "success"
        if airflow_state in FINISHED or (view is not None and view.get("run_id")):
            return "failed"
        return "pending"
    return airflow_state if airflow_state in FINISHED else "pending"


def update_partition(
    entry: dict[str, Any],
    airflow_run: dict[str, Any] | None,
    view: dict[str, Any] | None,
    *,
    trust_manifests: bool,
) -> None:
    """Refresh one partition's entry from its newest Airflow run and its manifests."""
    airflow_state = airflow_run.get("state") if airflow_run else None
    entry["airflow_state"] = airflow_state
    entry["state"] = partition_state(airflow_state, view, trust_manifests=trust_manifests)
    if airflow_run:
        entry["run_id"] = airflow_run.get("dag_run_id")
        entry["run_type"] = airflow_run.get("run_type")
        entry["start"] = iso(airflow_run.get("start_date"))
        entry["end"] = iso(airflow_run.get("end_date"))
        if airflow_run.get("duration") is not None:
            entry["duration_s"] = round(float(airflow_run["duration"]), 3)
    if view is not None:
        if not airflow_run or view.get("run_id") == entry.get("run_id"):
            for key in ("run_id", "start", "end", "duration_s"):
                if view.get(key) is not None and (key == "run_id" or entry.get(key) is None):
                    entry[key] = view[key]
            entry["tries"] = view["tries"]
            entry["first_error"] = view["first_error"] if entry["state"] == "failed" else None
            entry["manifests_complete"] = view["complete"]
            entry["missing"] = view["missing"] if entry["state"] == "failed" else []
    elif entry["state"] != "failed":
        entry["first_error"] = None


def finish_counts(summary: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in summary["partitions"]:
        counts[entry["state"]] = counts.get(entry["state"], 0) + 1
    summary["counts"] = dict(sorted(counts.items()))
    return summary["counts"]


def overall(summary: dict[str, Any]) -> str:
    """``succeeded`` (every partition), ``failed`` (some partition failed, none still going),
    ``running`` otherwise."""
    states = {e["state"] for e in summary["partitions"]}
    if states and states <= {"success"}:
        return "succeeded"
    if states & {"running", "queued"}:
        return "running"
    return "failed"


def format_table(summary: dict[str, Any]) -> str:
    """The summary as the table the CLI prints on stderr."""
    lines = [
        f"backfill {summary['backfill_id']} of {summary['dag_id']}: {summary['status'].upper()} "
        f"({', '.join(f'{v} {k}' for k, v in summary['counts'].items()) or 'no partitions'})",
        f"{'partition':<21} {'state':<8} {'tries':>5} {'secs':>7}  run / first error",
    ]
    for e in summary["partitions"]:
        secs = f"{e['duration_s']:.1f}" if isinstance(e.get("duration_s"), int | float) else "-"
        note = e.get("run_id") or "-"
        if e.get("skipped_by_resume"):
            note += " (manifests show success: skipped)"
        err = e.get("first_error")
        if e["state"] == "failed" and err:
            note = f"{err['task']}: [{err.get('kind')}] {str(err.get('message') or '')[:120]}"
        lines.append(f"{e['partition']:<21} {e['state']:<8} {e.get('tries') or '-':>5} {secs:>7}  {note}")
    return "\n".join(lines)

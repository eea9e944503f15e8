"""The summary a backfill's own runs write (greenlight.backfill.records): which backfill a run
belongs to, how records fold into the summary (the newest observation of a partition wins), and
parallel runs updating one local summary file without losing a partition.

Parallel runs on S3 (conditional PUTs on a real SeaweedFS) are tests/integration/test_backfill_summary_s3.py;
the hook under a real scheduler is tests/e2e/test_backfill_scheduler.py.
"""

from __future__ import annotations

import json
import multiprocessing

import pytest

from greenlight.backfill import records as rec
from greenlight.backfill.airflowapi import Airflow, BackfillRefused, backfill_of_run
from greenlight.backfill.plan import summary_relpath
from greenlight.dagsupport.api import AirflowApiError
from greenlight.storage.manifests import ManifestStore

DAYS = [f"2026-01-0{d}T00:00:00Z" for d in range(1, 7)]
BACKFILL = {
    "id": 7,
    "dag_id": "backfill_probe",
    "from_date": "2026-01-01T00:00:00Z",
    "to_date": "2026-01-06T00:00:00Z",
    "reprocess_behavior": "none",
    "max_active_runs": 3,
    "created_at": "2026-02-01T10:00:00Z",
    "completed_at": None,
    "dag_run_conf": {},
}


def record(day: str, state: str, observed: str, **extra) -> dict:
    run = {"dag_id": "backfill_probe", "run_id": f"backfill__{day}", "run_type": "backfill", "logical_date": day}
    doc = rec.partition_record(run, state, seen_by="check_run" if state == "success" else "task failure", **extra)
    doc.update(airflow_backfill_id=7, observed=observed)  # (the hook learns the id from the REST API)
    return doc


def test_a_run_belongs_to_the_active_backfill_covering_its_date():
    older = dict(BACKFILL, id=3, completed_at="2026-01-20T00:00:00Z")
    other_range = dict(BACKFILL, id=9, from_date="2026-03-01T00:00:00Z", to_date="2026-03-02T00:00:00Z")
    assert backfill_of_run([other_range, BACKFILL, older], "2026-01-03T00:00:00+00:00")["id"] == 7
    # Once both are complete (a run cleared again later), the newest covering one.
    done = dict(BACKFILL, completed_at="2026-02-02T00:00:00Z")
    assert backfill_of_run([older, done], "2026-01-03T00:00:00Z")["id"] == 7
    assert backfill_of_run([older, done], "2026-02-03T00:00:00Z") is None


def test_records_fold_into_the_summary_newest_observation_wins():
    summary = rec.airflow_summary(BACKFILL, None)
    assert summary["backfill_id"] == "airflow-7" and summary["airflow_backfills"][0]["id"] == 7
    failed = record(
        DAYS[1],
        "failed",
        "2026-02-01T10:01:00.000Z",
        first_error={"task": "work", "kind": "contract", "message": "missing column 'price'"},
        tries=1,
    )
    ok = record(DAYS[0], "success", "2026-02-01T10:01:05.000Z", view={"tries": 1, "duration_s": 4.5})
    assert rec.merge_records(summary, [failed, ok]) == 2
    entries = {e["partition"]: e for e in rec.finish(summary)["partitions"]}
    assert entries[DAYS[0]]["state"] == "success" and entries[DAYS[0]]["duration_s"] == 4.5
    assert entries[DAYS[1]]["state"] == "failed" and entries[DAYS[1]]["first_error"]["task"] == "work"
    assert summary["status"] == "failed" and summary["counts"] == {"failed": 1, "success": 1}

    # The failed partition was cleared and runs again: the CLI saw it running after the record.
    entries[DAYS[1]].update(state="running", observed="2026-02-01T10:05:00.000Z")
    assert rec.merge_records(summary, [failed]) == 0 and entries[DAYS[1]]["state"] == "running"
    # Its new run passes the check: that newer record wins.
    fixed = record(DAYS[1], "success", "2026-02-01T10:06:00.000Z", view={"tries": 2})
    assert rec.merge_records(summary, [failed, fixed]) == 1
    assert entries[DAYS[1]]["state"] == "success" and entries[DAYS[1]]["first_error"] is None
    assert entries[DAYS[1]]["tries"] == 2 and rec.finish(summary)["status"] == "succeeded"


def test_runs_still_in_flight_are_listed_before_they_have_a_record():
    summary = rec.airflow_summary(BACKFILL, None)
    runs = [
        {"dag_run_id": f"backfill__{DAYS[0]}", "logical_date": DAYS[0], "run_type": "backfill", "state": "running"},
        {"dag_run_id": f"backfill__{DAYS[1]}", "logical_date": DAYS[1], "run_type": "backfill", "state": "queued"},
        {"dag_run_id": f"scheduled__{DAYS[2]}", "logical_date": DAYS[2], "run_type": "scheduled", "state": "running"},
    ]
    rec.merge_records(summary, [record(DAYS[0], "success", "2026-02-01T10:01:00.000Z")])
    rec.observe_in_flight(summary, runs, exclude_run=f"backfill__{DAYS[1]}")  # (as if day 2's run were writing)
    # Day 1's run recorded its verdict and Airflow has not finished it yet: the verdict stays.
    states = [(e["partition"], e["state"]) for e in rec.finish(summary)["partitions"]]
    assert states == [(DAYS[0], "success")] and summary["status"] == "succeeded"
    rec.observe_in_flight(summary, runs, exclude_run=None)
    states = [(e["partition"], e["state"]) for e in rec.finish(summary)["partitions"]]
    assert states == [(DAYS[0], "success"), (DAYS[1], "queued")] and summary["status"] == "running"


def _one_run(root: str, day: str) -> None:
    """What one backfill run's hook does: its record, then the conditional summary update."""
    files = rec.SummaryFiles(ManifestStore(root))
    files.write_record(record(day, "success", rec.utcnow()))

    def mutate(current):
        summary = rec.airflow_summary(BACKFILL, current)
        rec.merge_records(summary, files.records(7))
        return rec.finish(summary)

    files.update(summary_relpath("airflow-7"), mutate)


def test_parallel_runs_on_a_local_root_lose_no_partition(tmp_path):
    days = [f"2026-01-{d:02d}T00:00:00Z" for d in range(1, 17)]
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_one_run, args=(str(tmp_path), day)) for day in days]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    summary = json.loads((tmp_path / "backfills" / "airflow-7" / "summary.json").read_text())
    assert [e["partition"] for e in summary["partitions"]] == days
    assert summary["counts"] == {"success": 16} and summary["status"] == "succeeded"
    assert len(list((tmp_path / "backfills" / "airflow-7" / "partitions").glob("*.json"))) == 16


def test_backfill_calls_use_the_right_method_and_refusals_name_the_backfill():
    """GETs, the create (POST) and the close (PUT .../cancel) each go out with their own HTTP method
    (a PUT sent as POST is refused by Airflow with 405); Airflow's 409 becomes a refusal (exit 2)
    naming the backfill and Airflow's own detail. The REST client is a stand-in that records calls."""
    sent = []

    class RecordingApi:
        def get(self, path):
            sent.append(("GET", path))
            return {"id": 7, "completed_at": None}

        def post(self, path, body):
            sent.append(("POST", path))
            return {"id": 8}

        def put(self, path, body):
            sent.append(("PUT", path))
            raise AirflowApiError(f"PUT http://x{path}: HTTP 409 " + '{"detail": "backfill 7 is already complete"}')

    airflow = Airflow(RecordingApi())
    assert airflow.backfill(7)["id"] == 7 and airflow.create({"dag_id": "backfill_probe"}) == {"id": 8}
    with pytest.raises(BackfillRefused) as refused:
        airflow.cancel(7)
    assert sent == [
        ("GET", "/api/v2/backfills/7"),
        ("POST", "/api/v2/backfills"),
        ("PUT", "/api/v2/backfills/7/cancel"),
    ]
    assert str(refused.value) == "backfill 7: backfill 7 is already complete" and refused.value.exit_code == 2

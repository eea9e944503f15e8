"""``add_run_check`` wires the backfill summary hook into every task of a greenlight DAG: the failure
notifier stays, the hook's failure callback is added once (mapped tasks included), and runs that are
not backfill runs write nothing, a backfill run files its record under its Airflow backfill. Under a
real scheduler the hook is tests/e2e/test_backfill_scheduler.py."""

from __future__ import annotations

import json
import time

import pendulum
from airflow.sdk import dag, task

from greenlight.backfill.records import (
    SummaryFiles,
    airflow_summary,
    finish,
    is_backfill_run,
    observe_in_flight,
    partition_record,
)
from greenlight.dagsupport.backfillsummary import report_partition
from greenlight.dagsupport.defaults import add_run_check, default_args, record_backfill_failure
from greenlight.storage.manifests import ManifestStore


def build():
    @dag(
        dag_id="hook_probe",
        schedule="@daily",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        default_args=default_args(),
        tags=["greenlight"],
    )
    def hook_probe():
        @task
        def items() -> list[int]:
            return [1, 2]

        @task
        def each(item: int) -> int:
            return item

        each.expand(item=items())

    return add_run_check(hook_probe())


def test_every_task_keeps_its_notifier_and_gets_the_hook_once():
    built = build()
    assert sorted(t.task_id for t in built.tasks) == ["check_run", "each", "items"]
    for each in built.tasks:
        callbacks = list(each.on_failure_callback)
        assert callbacks.count(record_backfill_failure) == 1, each.task_id
        assert len(callbacks) == 2, (each.task_id, callbacks)  # the failure notifier from default_args


def test_runs_that_are_not_backfills_write_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(tmp_path))
    asked = []

    class CountingApi:  # stands in for the REST client: a non-backfill run must not ask it anything
        def get(self, path):
            asked.append(path)
            return {"backfills": []}

    for run_type in ("scheduled", "manual", "asset_triggered"):
        run = {"dag_id": "hook_probe", "run_id": f"{run_type}__x", "run_type": run_type, "logical_date": "2026-01-01"}
        assert not is_backfill_run(run)
        assert report_partition(partition_record(run, "success", seen_by="check_run"), api=CountingApi()) is None
    assert asked == [] and list(tmp_path.iterdir()) == []
    # A backfill run does ask (here no backfill covers its date: nothing written, a warning logged).
    run = {"dag_id": "hook_probe", "run_id": "backfill__x", "run_type": "backfill", "logical_date": "2026-01-01"}
    assert report_partition(partition_record(run, "success", seen_by="check_run"), api=CountingApi()) is None
    assert asked == ["/api/v2/backfills?dag_id=hook_probe&limit=100&order_by=-id"]


def test_a_backfill_run_writes_its_record_under_its_airflow_backfill(monkeypatch, tmp_path):
    """The record is filed under the Airflow backfill the REST API says covers the run's date, and
    the summary lists it with the backfill's other runs still in flight. The REST client is a stand-in
    here (the same calls against a real API server: tests/e2e/test_backfill_scheduler.py)."""
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(tmp_path))
    older = {"id": 3, "dag_id": "hook_probe", "from_date": "2025-12-01T00:00:00Z", "to_date": "2025-12-31T00:00:00Z"}
    covering = {"id": 8, "dag_id": "hook_probe", "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-02T00:00:00Z"}
    day2 = {
        "dag_run_id": "backfill__2",
        "logical_date": "2026-01-02T00:00:00Z",
        "run_type": "backfill",
        "state": "running",
    }

    class BackfillApi:
        def get(self, path):
            if path.startswith("/api/v2/backfills?"):
                return {"backfills": [covering, older]}
            assert path.startswith("/api/v2/dags/hook_probe/dagRuns?"), path
            return {"dag_runs": [day2], "total_entries": 1}

    run = {"dag_id": "hook_probe", "run_id": "backfill__1", "run_type": "backfill", "logical_date": "2026-01-01"}
    where = report_partition(
        partition_record(run, "success", seen_by="check_run", view={"tries": 1}), api=BackfillApi()
    )

    folder = tmp_path / "backfills" / "airflow-8"
    assert where == str(folder / "summary.json")
    (record,) = [json.loads(p.read_text()) for p in (folder / "partitions").glob("*.json")]
    assert (record["airflow_backfill_id"], record["partition"], record["state"]) == (
        8,
        "2026-01-01T00:00:00Z",
        "success",
    )
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["backfill_id"] == "airflow-8" and summary["status"] == "running"
    assert [(p["partition"], p["state"], p["tries"]) for p in summary["partitions"]] == [
        ("2026-01-01T00:00:00Z", "success", 1),
        ("2026-01-02T00:00:00Z", "running", None),
    ]


def test_a_run_listed_in_flight_while_its_record_was_on_the_way_still_ends_with_its_verdict(monkeypatch, tmp_path):
    """Another run of the backfill lists this run as running while this run's hook is asking the
    REST API which backfill it belongs to (seen under the scheduler): the record, written after
    that, must win over that older "running", or the summary keeps the partition running forever."""
    monkeypatch.setenv("GREENLIGHT_TASK_MANIFEST_ROOT", str(tmp_path))
    backfill = {"id": 5, "dag_id": "hook_probe", "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-02T00:00:00Z"}
    this_run = {"dag_run_id": "backfill__1", "logical_date": "2026-01-01T00:00:00Z", "run_type": "backfill"}
    files = SummaryFiles(ManifestStore(str(tmp_path)))

    def other_run_lists_this_one_running(current):
        summary = airflow_summary(backfill, current)
        observe_in_flight(summary, [{**this_run, "state": "running"}], exclude_run="backfill__2")
        return finish(summary)

    class SlowApi:  # stands in for the REST client; the other run writes while it is asked
        def get(self, path):
            if path.startswith("/api/v2/backfills?"):
                time.sleep(0.01)
                files.update("backfills/airflow-5/summary.json", other_run_lists_this_one_running)
                time.sleep(0.01)
                return {"backfills": [backfill]}
            return {"dag_runs": [], "total_entries": 0}

    run = {"dag_id": "hook_probe", "run_id": "backfill__1", "run_type": "backfill", "logical_date": "2026-01-01"}
    record = partition_record(run, "success", seen_by="check_run")
    assert report_partition(record, api=SlowApi()) is not None
    summary = json.loads((tmp_path / "backfills" / "airflow-5" / "summary.json").read_text())
    assert [(p["partition"], p["state"]) for p in summary["partitions"]] == [("2026-01-01T00:00:00Z", "success")]
    assert summary["status"] == "succeeded"

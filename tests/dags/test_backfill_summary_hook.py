"""``add_run_check`` wires the backfill summary hook into every task of a greenlight DAG: the failure
notifier stays, the hook's failure callback is added once (mapped tasks included), and runs that are
not backfill runs write nothing. Under a real scheduler the hook is tests/e2e/test_backfill_scheduler.py."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from greenlight.dagsupport.backfillsummary import is_backfill_run, record_partition
from greenlight.dagsupport.defaults import add_run_check, default_args, record_backfill_failure


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
        assert record_partition(run, "success", seen_by="check_run", api=CountingApi()) is None
    assert asked == [] and list(tmp_path.iterdir()) == []
    # A backfill run does ask (here no backfill covers its date: nothing written, a warning logged).
    run = {"dag_id": "hook_probe", "run_id": "backfill__x", "run_type": "backfill", "logical_date": "2026-01-01"}
    assert record_partition(run, "success", seen_by="check_run", api=CountingApi()) is None
    assert asked == ["/api/v2/backfills?dag_id=hook_probe&limit=100&order_by=-id"]

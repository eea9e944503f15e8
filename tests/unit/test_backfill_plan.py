"""``greenlight backfill``'s decisions without servers: ranges, which partitions ``--resume`` reruns
and with which Airflow backfills, and the summary's per-partition entries (greenlight.backfill.plan).

The Airflow side is plain dicts shaped like the REST API's answers; the manifests are dicts shaped
like the task manifests the listener writes. The real scheduler path is tests/e2e/test_backfill_scheduler.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from greenlight.backfill import plan as bf
from greenlight.runcheck import check_run

DAYS = [f"2026-01-0{d}T00:00:00Z" for d in range(1, 7)]
STRUCTURE = [{"task_id": "work", "upstream": [], "downstream": []}]


def manifest(day: str, state: str, *, run_id: str | None = None, try_number: int = 1, error: str | None = None):
    run_id = run_id or f"backfill__{day}"
    doc = {
        "dag_id": "backfill_probe",
        "run_id": run_id,
        "logical_date": day.replace("Z", "+00:00"),
        "task_id": "work",
        "map_index": -1,
        "try_number": try_number,
        "state": state,
        "start": day.replace("T00:00:00Z", "T10:00:00+00:00"),
        "end": day.replace("T00:00:00Z", "T10:00:04.500000+00:00"),
    }
    if error:
        doc["error"] = {"kind": "contract", "type": "ContractError", "message": error}
    return run_id, {"work": doc}


def views(runs):
    out = {}
    for p, (rid, docs) in bf.runs_by_partition(runs).items():
        out[p] = bf.manifest_view(check_run("backfill_probe", rid, STRUCTURE, docs), docs)
    return out


def test_a_day_range_covers_whole_days_and_end_before_start_is_refused():
    start = bf.parse_bound("2026-01-01", end=False, what="--start")
    end = bf.parse_bound("2026-01-06", end=True, what="--end")
    assert (start.isoformat(), end.isoformat()) == ("2026-01-01T00:00:00+00:00", "2026-01-06T23:59:59+00:00")
    assert bf.default_backfill_id("backfill_probe", start, end) == "backfill_probe__2026-01-01__2026-01-06"
    with pytest.raises(bf.BadRange, match=r"--end 2026-01-01 is before --start 2026-01-03"):
        bf.check_range(
            bf.parse_bound("2026-01-03", end=False, what="--start"),
            bf.parse_bound("2026-01-01", end=True, what="--end"),
        )
    with pytest.raises(bf.BadRange, match=r"--start '2026-13-01'"):
        bf.parse_bound("2026-13-01", end=False, what="--start")
    with pytest.raises(bf.BadRange, match="in the future"):
        bf.check_range(
            datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC), now=datetime(2026, 1, 1, tzinfo=UTC)
        )


def test_resume_when_airflow_agrees_is_one_backfill_with_reprocess_failed():
    # Runs 2 and 5 failed; Airflow's states and the manifests agree.
    failed = {DAYS[1], DAYS[4]}
    runs = dict(
        manifest(d, "failed" if d in failed else "success", error="boom" if d in failed else None) for d in DAYS
    )
    seen = views(runs)
    done = {p for p, v in seen.items() if v["complete"]}
    state = {d: ("failed" if d in failed else "success") for d in DAYS}
    plan = bf.plan_resume(DAYS, done, state)
    assert plan["todo"] == [DAYS[1], DAYS[4]] and plan["skipped"] == [DAYS[0], DAYS[2], DAYS[3], DAYS[5]]
    assert plan["backfills"] == [
        {"from": DAYS[0], "to": DAYS[5], "reprocess_behavior": "failed", "partitions": [DAYS[1], DAYS[4]]}
    ]


def test_resume_trusts_manifests_over_airflow_after_a_db_reset():
    # After a metadata DB reset Airflow knows no run: reprocess_behavior=failed (or none) would rerun
    # all six. The manifests say four succeeded: only the two stretches to redo get backfills.
    failed = {DAYS[1], DAYS[4]}
    runs = dict(
        manifest(d, "failed" if d in failed else "success", error="boom" if d in failed else None) for d in DAYS
    )
    done = {p for p, v in views(runs).items() if v["complete"]}
    plan = bf.plan_resume(DAYS, done, {d: None for d in DAYS})
    assert [b["partitions"] for b in plan["backfills"]] == [[DAYS[1]], [DAYS[4]]]
    assert {b["reprocess_behavior"] for b in plan["backfills"]} == {"completed"}
    assert (plan["backfills"][0]["from"], plan["backfills"][0]["to"]) == (DAYS[1], DAYS[1])
    assert "disagree on 4 partition(s)" in plan["reason"]


def test_resume_reruns_a_run_airflow_calls_success_when_its_manifests_do_not():
    # Someone marked day 3's failed task "success" in the UI (no manifest is written for that):
    # Airflow would skip it under reprocess_behavior=failed; greenlight reruns it.
    runs = dict(manifest(d, "failed" if d == DAYS[2] else "success", error="x" if d == DAYS[2] else None) for d in DAYS)
    done = {p for p, v in views(runs).items() if v["complete"]}
    plan = bf.plan_resume(DAYS, done, {d: "success" for d in DAYS})
    assert plan["backfills"] == [
        {"from": DAYS[2], "to": DAYS[2], "reprocess_behavior": "completed", "partitions": [DAYS[2]]}
    ]


def test_resume_leaves_running_partitions_and_neighbours_become_one_stretch():
    done = {DAYS[0], DAYS[5]}
    state = {
        DAYS[0]: "success",
        DAYS[1]: "failed",
        DAYS[2]: None,
        DAYS[3]: "running",
        DAYS[4]: "failed",
        DAYS[5]: "success",
    }
    plan = bf.plan_resume(DAYS, done, state)
    assert plan["in_flight"] == [DAYS[3]]
    assert plan["todo"] == [DAYS[1], DAYS[2], DAYS[4]]
    # Airflow's "failed" rule gives the same set here (failed or missing): one backfill.
    assert [b["reprocess_behavior"] for b in plan["backfills"]] == ["failed"]
    everything_done = bf.plan_resume(DAYS, set(DAYS), {d: "success" for d in DAYS})
    assert everything_done["backfills"] == [] and everything_done["skipped"] == DAYS


def test_the_newest_run_of_a_partition_is_its_state_and_the_first_error_is_named():
    old_run, old = manifest(DAYS[1], "failed", run_id="scheduled__2026-01-02", error="first failure")
    new_run, new = manifest(DAYS[1], "success", try_number=2)
    new["work"]["start"] = "2026-01-02T11:00:00+00:00"
    new["work"]["end"] = "2026-01-02T11:00:02+00:00"
    seen = views({old_run: old, new_run: new})
    assert seen[DAYS[1]]["complete"] and seen[DAYS[1]]["run_id"] == new_run and seen[DAYS[1]]["tries"] == 2

    run_id, docs = manifest(DAYS[4], "failed", error="partition 2026-01-05: column 'price' missing")
    view = views({run_id: docs})[DAYS[4]]
    assert view["first_error"] == {
        "task": "work",
        "try_number": 1,
        "kind": "contract",
        "type": "ContractError",
        "message": "partition 2026-01-05: column 'price' missing",
    }
    assert view["duration_s"] == 4.5 and any("work is failed" in m for m in view["missing"])


def test_summary_entries_states_counts_and_status():
    summary = bf.new_summary("b1", "backfill_probe", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
    ok_run, ok = manifest(DAYS[0], "success")
    bad_run, bad = manifest(DAYS[1], "failed", error="boom")
    seen = views({ok_run: ok, bad_run: bad})
    airflow = {
        DAYS[0]: {"dag_run_id": ok_run, "state": "success", "start_date": "2026-01-01T10:00:00Z", "duration": 4.5},
        DAYS[1]: {"dag_run_id": bad_run, "state": "failed", "start_date": "2026-01-02T10:00:00Z", "duration": 4.5},
        DAYS[2]: {"dag_run_id": "backfill__x", "state": "running", "start_date": "2026-01-03T10:00:00Z"},
    }
    for d in DAYS[:3]:
        bf.update_partition(bf.partition_entry(summary, d), airflow.get(d), seen.get(d), trust_manifests=True)
    assert [e["state"] for e in summary["partitions"]] == ["success", "failed", "running"]
    assert summary["partitions"][1]["first_error"]["message"] == "boom"
    assert summary["partitions"][0]["first_error"] is None and summary["partitions"][0]["tries"] == 1
    assert bf.overall(summary) == "running"
    airflow[DAYS[2]]["state"] = "success"  # Airflow says success, but the run left no manifests
    bf.update_partition(bf.partition_entry(summary, DAYS[2]), airflow[DAYS[2]], None, trust_manifests=True)
    assert summary["partitions"][2]["state"] == "failed"
    assert bf.finish_counts(summary) == {"failed": 2, "success": 1} and bf.overall(summary) == "failed"
    # A DAG that writes no manifests is judged by Airflow's states alone.
    bf.update_partition(bf.partition_entry(summary, DAYS[2]), airflow[DAYS[2]], None, trust_manifests=False)
    assert summary["partitions"][2]["state"] == "success"
    table = bf.format_table(summary)
    assert "work: [contract] boom" in table and DAYS[2] in table


def test_airflow_reprocess_rules_as_documented():
    # https://airflow.apache.org/docs/apache-airflow/3.3.0/core-concepts/backfill.html
    assert [bf.airflow_would_rerun(s, "none") for s in (None, "failed", "success", "running")] == [
        True,
        False,
        False,
        False,
    ]
    assert [bf.airflow_would_rerun(s, "failed") for s in (None, "failed", "success", "queued")] == [
        True,
        True,
        False,
        False,
    ]
    assert [bf.airflow_would_rerun(s, "completed") for s in (None, "failed", "success", "running")] == [
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2026-01-01", "--end", "2026-01-06"], "--dag-id is required"),
        (
            ["--dag-id", "d", "--start", "2026-01-06", "--end", "2026-01-01"],
            "--end 2026-01-01 is before --start 2026-01-06",
        ),
        (["--dag-id", "d", "--start", "01/01/2026", "--end", "2026-01-06"], "--start '01/01/2026'"),
        (["--dag-id", "d", "--start", "2026-01-01", "--end", "2026-01-06", "--max-parallel", "0"], "--max-parallel 0"),
        (
            ["--dag-id", "d", "--start", "2026-01-01", "--end", "2026-01-06", "--conf", "[1]"],
            "--conf must be a JSON object",
        ),
        (["--dag-id", "d", "--start", "2026-01-01", "--end", "2026-01-06"], "$AIRFLOW_CONN_AIRFLOW_API is not set"),
    ],
)
def test_bad_input_is_refused_with_exit_2_before_airflow_is_asked(argv, message, monkeypatch, capsys):
    from greenlight.cli import main

    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API", raising=False)
    assert main(["backfill", *argv]) == 2
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert message in json.loads(out)["error"]


def test_only_run_folders_that_can_hold_the_range_are_read():
    assert bf.may_hold("backfill__2026-01-03T00_00_00_00_00~86b1730eff", DAYS[0], DAYS[5])
    assert bf.may_hold("scheduled__2026-01-06T00_00_00_00_00~0123456789", DAYS[0], "2026-01-06T23:59:59Z")
    assert not bf.may_hold("scheduled__2025-12-31T00_00_00_00_00~0123456789", DAYS[0], DAYS[5])
    assert bf.may_hold("manual__2026-12-02T10_00_00_00_00~0123456789", DAYS[0], DAYS[5])  # any logical date

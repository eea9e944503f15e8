"""``greenlight backfill`` under a real scheduler (``airflow standalone``, LocalExecutor).

Runbook 003's backfill procedure, as an operator runs it: a backfill of six daily partitions of
``backfill_probe`` (tests/dag_probes) where two fail, the summary file checked; the upstream fixed;
the same command with ``--resume`` reruns only those two. Along the way the refusals (exit 2) an
operator can hit: an unknown DAG, a DAG without a schedule, end before start, and a second backfill
of the same DAG while one runs. Then backfills started the way the UI's Backfill form starts one
(the same ``POST /api/v2/backfills`` body): one that nobody follows still gets its
``backfills/airflow-<N>/summary.json`` (its runs write it: the probe's ``check_run`` and the failure
callback, through the ``airflow_api`` connection), and one followed with ``--follow``.

The stack is small on purpose (only the probe DAGs in the DAGs folder; tests/backfillfixtures.py): ~3-5 min.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from backfillfixtures import ROOT, airflow_summary, backfill_airflow, greenlight_backfill, states_of
from e2ehelpers import wait_for

# One scenario on one stack: the resume cases continue the first backfill (--reverse keeps the order).
pytestmark = [pytest.mark.e2e, pytest.mark.story, pytest.mark.timeout(900)]

PROBES = ROOT / "tests" / "dag_probes"
DAG = "backfill_probe"
DAYS = [f"2026-01-0{d}T00:00:00Z" for d in range(1, 7)]
FAILING = ["2026-01-02", "2026-01-05"]
FAILING_PARTITIONS = [f"{d}T00:00:00Z" for d in FAILING]


@pytest.fixture(scope="module")
def stack(s3env, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_backfill")
    # run_check_probe: a DAG without a schedule (refused)
    files = [PROBES / "backfill_probe.py", PROBES / "run_check_probe.py"]
    with backfill_airflow(home, s3env, files, [DAG, "run_check_probe"]) as started:
        yield started.api, started.cli_env, started.manifests


def greenlight(env, *args: str):
    """``python -m greenlight backfill ARGS`` as an operator runs it: (exit code, JSON result, stderr)."""
    return greenlight_backfill(env, PROBES, *args)


def summary_of(manifests: Path) -> dict:
    return json.loads((manifests / "backfills" / f"{DAG}__2026-01-01__2026-01-06" / "summary.json").read_text())


def run_of(api, day: str) -> dict:
    """The probe's run of logical date ``day`` (the backfills here make one per day)."""
    return api.get(f"/dags/{DAG}/dagRuns?logical_date_gte={day}&logical_date_lte={day}")["dag_runs"][0]


def tries_in_airflow(api, day: str) -> int:
    (ti,) = [t for t in api.task_instances(DAG, run_of(api, day)["dag_run_id"]) if t["task_id"] == "work"]
    return ti["try_number"]


def create_like_the_ui_form(api, start: str, end: str, *, max_active_runs: int) -> dict:
    """Once Airflow marked the earlier backfills of the probe complete (one active backfill per DAG),
    POST the body the UI's Backfill form sends (Airflow 3.3's UI bundle) to /api/v2/backfills."""
    wait_for(
        lambda: all(b.get("completed_at") for b in api.get(f"/backfills?dag_id={DAG}")["backfills"]),
        120,
        "earlier backfills to be marked complete",
    )
    body = {
        "dag_id": DAG,
        "from_date": f"{start}T00:00:00.000Z",
        "to_date": f"{end}T00:00:00.000Z",
        "dag_run_conf": {},
        "max_active_runs": max_active_runs,
        "reprocess_behavior": "none",
        "run_backwards": False,
        "run_on_latest_version": True,
    }
    return api.post("/backfills", body)


def test_six_partitions_two_fail_then_resume_reruns_only_those(stack):
    api, env, manifests = stack
    api.post("/variables", {"key": "backfill_probe_fail_dates", "value": json.dumps(FAILING)})

    # Refused before anything starts (exit 2), each naming what is wrong.
    code, out, _ = greenlight(env, "--dag-id", "no_such_dag", "--start", "2026-01-01", "--end", "2026-01-06")
    assert code == 2 and "'no_such_dag'" in out["error"] and "no such DAG" in out["error"]
    code, out, _ = greenlight(env, "--dag-id", "run_check_probe", "--start", "2026-01-01", "--end", "2026-01-06")
    assert code == 2 and "run_check_probe" in out["error"] and "not time-based" in out["error"]
    code, out, _ = greenlight(env, "--dag-id", DAG, "--start", "2026-01-06", "--end", "2026-01-01")
    assert code == 2 and "--end 2026-01-01 is before --start 2026-01-06" in out["error"]

    started = time.monotonic()
    code, out, err = greenlight(
        env, "--dag-id", DAG, "--start", "2026-01-01", "--end", "2026-01-06", "--max-parallel", "3"
    )
    print(f"\nfirst backfill: {time.monotonic() - started:.0f}s")
    assert code == 1, err[-2000:]
    assert out["failed"] == FAILING_PARTITIONS and out["counts"] == {"failed": 2, "success": 4}
    summary = summary_of(manifests)
    assert out["summary"].endswith("summary.json") and summary["status"] == "failed"
    assert [p["partition"] for p in summary["partitions"]] == DAYS
    by_day = {p["partition"]: p for p in summary["partitions"]}
    tries_before = {day: tries_in_airflow(api, day) for day in DAYS}
    for day in DAYS:
        entry = by_day[day]
        # (a try that could not start on a busy machine is retried: tries can be 2 for any of them)
        assert (
            entry["tries"] == tries_before[day]
            and entry["duration_s"] is not None
            and entry["run_id"].startswith("backfill__")
        )
        if day in FAILING_PARTITIONS:
            assert entry["state"] == "failed" and entry["airflow_state"] == "failed"
            err0 = entry["first_error"]
            assert err0["task"] == "work" and err0["kind"] == "contract"
            assert f"partition {day[:10]}: upstream delivery is missing column 'price'" in err0["message"]
        else:
            assert entry["state"] == "success" and entry["first_error"] is None
    assert "contract check failed for partition 2026-01-02" in err  # the table on stderr
    # The runs of the Airflow backfill greenlight created wrote their own summary too, and agree.
    (first_id,) = out["airflow_backfill_ids"]
    own = airflow_summary(manifests, first_id)
    assert states_of(own) == [(p["partition"], p["state"]) for p in summary["partitions"]]
    assert summary["airflow_backfills"][0]["id"] == first_id

    # The upstream is fixed; the same command with --resume reruns the two failed partitions only.
    api.client._request("DELETE", "/api/v2/variables/backfill_probe_fail_dates")
    started = time.monotonic()
    code, out, err = greenlight(
        env, "--dag-id", DAG, "--start", "2026-01-01", "--end", "2026-01-06", "--max-parallel", "3", "--resume"
    )
    print(f"resume: {time.monotonic() - started:.0f}s")
    assert code == 0, err[-2000:]
    assert out["ran"] == FAILING_PARTITIONS and out["skipped"] == [d for d in DAYS if d not in FAILING_PARTITIONS]
    assert out["counts"] == {"success": 6} and out["failed"] == []
    summary = summary_of(manifests)
    assert summary["status"] == "succeeded" and [a["mode"] for a in summary["attempts"]] == ["backfill", "resume"]
    assert [b["reprocess_behavior"] for b in summary["airflow_backfills"]] == ["none", "failed"]
    for entry in summary["partitions"]:
        rerun = entry["partition"] in FAILING_PARTITIONS
        assert entry["state"] == "success" and entry["first_error"] is None
        before = tries_before[entry["partition"]]
        assert entry["skipped_by_resume"] is (not rerun)
        # The two reran once more; Airflow agrees that the four good partitions were not run again.
        assert entry["tries"] == tries_in_airflow(api, entry["partition"])
        assert entry["tries"] > before if rerun else entry["tries"] == before


def test_resume_goes_by_manifests_where_airflow_disagrees(stack):
    """Airflow calls day 3 failed (as after a DB restore from an older backup) but its manifests
    show success; day 4's manifests are gone (as after a task marked success by hand in the UI,
    which writes none) though Airflow calls it a success. ``reprocess_behavior=failed`` would rerun
    day 3 and skip day 4; ``--resume`` does the opposite: it reruns day 4 alone."""
    api, env, manifests = stack
    if not (manifests / "backfills").is_dir():
        pytest.skip("needs the backfill of the test above")
    day3, day4 = DAYS[2], DAYS[3]
    run3 = run_of(api, day3)
    api.client._request(
        "PATCH", f"/api/v2/dags/{DAG}/dagRuns/{quote(run3['dag_run_id'], safe='')}", {"state": "failed"}
    )
    run4 = run_of(api, day4)
    (folder,) = [p for p in (manifests / DAG).iterdir() if p.name.startswith("backfill__2026-01-04")]
    shutil.rmtree(folder)
    tries4 = tries_in_airflow(api, day4)

    code, out, err = greenlight(env, "--dag-id", DAG, "--start", "2026-01-01", "--end", "2026-01-06", "--resume")
    assert code == 0, err[-2000:]
    assert out["ran"] == [day4] and day3 in out["skipped"]
    summary = summary_of(manifests)
    last = summary["airflow_backfills"][-1]
    assert (last["from_date"], last["to_date"], last["reprocess_behavior"]) == (day4, day4, "completed")
    assert "disagree on 2 partition(s)" in summary["attempts"][-1]["plan"]
    entries = {p["partition"]: p for p in summary["partitions"]}
    assert entries[day3]["state"] == "success" and entries[day3]["airflow_state"] == "failed"
    assert entries[day4]["state"] == "success" and entries[day4]["run_id"] == run4["dag_run_id"]
    assert tries_in_airflow(api, day4) == tries4 + 1


def test_a_backfill_started_like_the_ui_form_is_followed(stack):
    """A backfill created with the UI form's request, paused, refuses a second one; ``--follow`` follows it."""
    api, env, manifests = stack
    started = time.monotonic()
    created = create_like_the_ui_form(api, "2026-01-07", "2026-01-08", max_active_runs=1)
    # Paused at once (as from the UI's banner), its runs stay queued: a second backfill of the DAG
    # is refused, naming the running one and how to follow it.
    api.client._request("PUT", f"/api/v2/backfills/{created['id']}/pause", {})
    code, out, _ = greenlight(env, "--dag-id", DAG, "--start", "2026-01-07", "--end", "2026-01-08")
    assert code == 2 and f"Airflow backfill {created['id']} of {DAG}" in out["error"], out
    assert "is still paused" in out["error"] and f"--follow {created['id']}" in out["error"]
    api.client._request("PUT", f"/api/v2/backfills/{created['id']}/unpause", {})

    code, out, err = greenlight(env, "--follow", str(created["id"]))
    print(f"follow: {time.monotonic() - started:.0f}s")
    assert code == 0, err[-2000:]
    # --follow N keeps the summary the runs of backfill N write themselves.
    assert out["backfill_id"] == f"airflow-{created['id']}" and out["airflow_backfill_ids"] == [created["id"]]
    assert out["summary"] == str(manifests / "backfills" / f"airflow-{created['id']}" / "summary.json")
    summary = json.loads(Path(out["summary"]).read_text())
    assert states_of(summary) == [("2026-01-07T00:00:00Z", "success"), ("2026-01-08T00:00:00Z", "success")]
    assert summary["attempts"][0]["mode"] == "follow"


def test_a_backfill_from_the_ui_form_writes_its_summary_without_follow(stack):
    """Nobody runs ``greenlight backfill``: the runs of a backfill created through the REST API (the
    UI form's request) write ``backfills/airflow-<N>/summary.json`` themselves, one partition
    failing. A ``--follow`` afterwards finds the same file and the same verdict."""
    api, env, manifests = stack
    api.post("/variables", {"key": "backfill_probe_fail_dates", "value": json.dumps(["2026-01-10"])})
    days = ["2026-01-09T00:00:00Z", "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z"]
    started = time.monotonic()
    created = create_like_the_ui_form(api, "2026-01-09", "2026-01-11", max_active_runs=3)
    finished = wait_for(
        lambda: (s := airflow_summary(manifests, created["id"])) and s["status"] in ("succeeded", "failed") and s,
        600,
        "the backfill's runs to write its summary",
    )
    print(f"\nsummary without a follow: {time.monotonic() - started:.0f}s")
    api.client._request("DELETE", "/api/v2/variables/backfill_probe_fail_dates")
    assert states_of(finished) == [(days[0], "success"), (days[1], "failed"), (days[2], "success")]
    assert finished["backfill_id"] == f"airflow-{created['id']}" and finished["status"] == "failed"
    assert finished["dag_id"] == DAG and finished["airflow_backfills"][0]["id"] == created["id"]
    assert finished["counts"] == {"failed": 1, "success": 2} and finished["attempts"] == []
    entries = {p["partition"]: p for p in finished["partitions"]}
    failed = entries[days[1]]
    assert failed["seen_by"] == "task failure" and failed["first_error"]["task"] == "work"
    assert failed["first_error"]["kind"] == "contract" and "missing column 'price'" in failed["first_error"]["message"]
    for day in (days[0], days[2]):
        assert entries[day]["seen_by"] == "check_run" and entries[day]["first_error"] is None
        assert entries[day]["run_id"].startswith(f"backfill__{day[:10]}")
        assert entries[day]["tries"] == tries_in_airflow(api, day) and entries[day]["duration_s"] is not None
    records = sorted((manifests / "backfills" / f"airflow-{created['id']}" / "partitions").glob("*.json"))
    assert len(records) == 3

    # Following it afterwards: the same file, the same verdict, now with the follow's attempt.
    wait_for(lambda: api.get(f"/backfills/{created['id']}")["completed_at"], 120, "the backfill to complete")
    code, out, err = greenlight(env, "--follow", str(created["id"]))
    assert code == 1, err[-2000:]
    assert out["backfill_id"] == f"airflow-{created['id']}" and out["failed"] == [days[1]]
    followed = airflow_summary(manifests, created["id"])
    assert states_of(followed) == states_of(finished) and [a["mode"] for a in followed["attempts"]] == ["follow"]

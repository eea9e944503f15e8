"""Runs and follows a resumable backfill (runbook 003) through Airflow 3's backfill API.

:class:`Backfill` is what ``greenlight backfill`` does: refuse what cannot be backfilled, create the
Airflow backfill(s) that :func:`greenlight.backfill.plan.plan_resume` chose, follow the runs partition
by partition through the REST API (:class:`greenlight.backfill.airflowapi.Airflow`) and the task
manifests (:class:`Manifests`, judged by the run check) and keep ``backfills/<backfill_id>/summary.json``
up to date, with the records the runs wrote themselves folded in (:mod:`greenlight.backfill.records`;
``--follow N`` writes the very summary the runs of Airflow backfill ``N`` write, ``airflow-<N>``). The
decisions themselves are plain functions in :mod:`greenlight.backfill.plan`; the command line is
:mod:`greenlight.cli.backfill`.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from greenlight.backfill.airflowapi import Airflow, BackfillRefused, say
from greenlight.backfill.plan import (
    IN_FLIGHT,
    BadRange,
    airflow_would_rerun,
    check_range,
    default_backfill_id,
    format_table,
    iso,
    latest_runs,
    manifest_view,
    may_hold,
    new_summary,
    parse_bound,
    partition_entry,
    plan_resume,
    runs_by_partition,
    summary_relpath,
    update_partition,
)
from greenlight.backfill.records import SummaryFiles, airflow_summary, airflow_summary_id, finish, merge_records
from greenlight.cli.checkrun import dags_folder, load_dag
from greenlight.cli.output import emit
from greenlight.dagsupport.runcheck import dag_structure
from greenlight.dagsupport.taskmanifest import cli_root, store_for
from greenlight.errors import ConfigError, GreenlightError
from greenlight.runcheck import ManifestRoot, check_run, read_json_uri
from greenlight.storage.manifests import safe_name, utcnow
from greenlight.storage.s3 import make_client

#: How long to wait for Airflow to mark a backfill whose runs are all finished complete (its
#: scheduler does that every 30 s) before refusing to start another one of the same DAG.
COMPLETION_GRACE_S = 90.0
#: How long a run Airflow calls a success may lack its last task manifest before it counts as failed.
SETTLE_S = 20.0


class BackfillUnfinished(GreenlightError):
    """The wait ended before every partition finished: the Airflow backfill goes on."""

    kind = "timeout"
    retryable = True


# ------------------------------------------------------------------------------ the manifests
class Manifests:
    """Task manifests of one DAG, judged per partition by the run check (``check-run``'s logic)."""

    def __init__(self, dag_id: str, root: str, structure: list[dict] | None):
        self.dag_id = dag_id
        self.root = root
        self.structure = structure
        self.client = None
        if root.startswith("s3://"):
            self.client = make_client(max_pool=8)
        self.reader = ManifestRoot(root, self.client)

    @property
    def enabled(self) -> bool:
        return self.structure is not None

    def _pointer(self, uri: str):
        if uri.startswith("s3://") and self.client is None:
            self.client = make_client(max_pool=8)
        return read_json_uri(uri, self.client)

    def view(self, run_id: str, docs: dict[str, dict]) -> dict[str, Any]:
        report = check_run(self.dag_id, run_id, self.structure, docs, read_pointer=self._pointer)
        return manifest_view(report, docs)

    def by_partition(self, start: str, end: str) -> dict[str, dict[str, Any]]:
        """``{partition: view}`` from the newest run of each logical date in ``[start, end]``."""

        if not self.enabled:
            return {}
        folders = [f for f in self.reader.run_folders(self.dag_id) if may_hold(f, start, end)]
        runs = {f: self.reader.read_run(self.dag_id, f) for f in folders}
        return {p: self.view(rid, docs) for p, (rid, docs) in runs_by_partition(runs).items() if start <= p <= end}

    def of_run(self, run_id: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        docs = self.reader.read_run(self.dag_id, safe_name(run_id))
        return self.view(run_id, docs) if docs else None


def _structure(dag_id: str, tags: list, folder: str | None) -> list[dict] | None:
    """The DAG's task structure for the run check; None for a DAG that writes no manifests."""
    if "greenlight" not in tags:
        return None
    return dag_structure(load_dag(dag_id, dags_folder(folder)))


def checked_range(start_text: str, end_text: str):
    try:
        start = parse_bound(start_text, end=False, what="--start")
        end = parse_bound(end_text, end=True, what="--end")
        check_range(start, end)
    except BadRange as exc:
        raise ConfigError(str(exc)) from None
    return start, end


class Backfill:
    def __init__(self, airflow: Airflow, args: argparse.Namespace, conf: dict | None):
        self.airflow = airflow
        self.args = args
        self.conf = conf

    # --------------------------------------------------------------- checks (all before any change)
    def _range(self):
        if self.args.follow is not None:
            bf = self.airflow.backfill(self.args.follow)
            if bf is None:
                raise ConfigError(f"--follow {self.args.follow}: Airflow has no backfill with that id")
            self.followed = bf
            self.args.dag_id = bf["dag_id"]
            start, end = (
                parse_bound(bf["from_date"], end=False, what="from_date"),
                parse_bound(bf["to_date"], end=True, what="to_date"),
            )
            return start, end
        return checked_range(self.args.start, self.args.end)

    def _dag(self) -> dict:
        dag_id = self.args.dag_id
        dag = self.airflow.dag(dag_id)
        if dag is None:
            raise ConfigError(f"--dag-id {dag_id!r}: Airflow knows no such DAG (is its file parsed?)")
        if not dag.get("timetable_periodic", True):
            raise BackfillRefused(
                f"--dag-id {dag_id}: its schedule ({dag.get('timetable_summary') or 'none'}) is not time-based; "
                "a backfill needs one (trigger single runs instead)"
            )
        if dag.get("is_paused") and self.args.follow is None:
            raise BackfillRefused(
                f"--dag-id {dag_id} is paused: the scheduler starts no task of a paused DAG, so the backfill's "
                "runs would wait forever; unpause it first (if greenlight's halt paused it, clear the halt)"
            )
        return dag

    def _own_ids(self, dag_id: str) -> set[int]:
        """Airflow backfill ids this greenlight backfill created (from its summary)."""
        return {b["id"] for b in getattr(self, "summary", {}).get("airflow_backfills", ())}

    def _unfinished(self, bf: dict) -> list[str]:
        runs = self.airflow.runs(bf["dag_id"], iso(bf["from_date"]), iso(bf["to_date"]))
        return [r["dag_run_id"] for r in runs if r.get("run_type") == "backfill" and r.get("state") in IN_FLIGHT]

    def _close(self, airflow_id: int) -> bool:
        """Mark a backfill greenlight made complete once every run of it has finished.

        Airflow's scheduler does the same within 30 s; until then a new backfill of the DAG is
        refused. ``PUT /backfills/{id}/cancel`` on a backfill with no queued or running run only
        sets its ``completed_at`` (cancel fails queued runs: there are none), so a ``--resume``
        right after does not wait. Never used on a backfill greenlight did not create."""
        bf = self.airflow.backfill(airflow_id)
        if bf is None or bf.get("completed_at") or self._unfinished(bf):
            return False
        try:
            self.airflow.cancel(airflow_id)
        except GreenlightError as exc:  # already completed meanwhile (409), or the API is busy: Airflow closes it
            say(f"backfill {airflow_id}: not closed now ({exc}); Airflow's scheduler will")
            return False
        for entry in self.summary["airflow_backfills"]:
            if entry["id"] == airflow_id:
                entry["closed_by_greenlight"] = True
        return True

    def _no_other_backfill(self, dag_id: str) -> None:
        """Refuse while another backfill of the DAG runs; wait out one whose runs have all finished
        but that Airflow has not marked complete yet (its scheduler does every 30 s)."""

        deadline = time.monotonic() + COMPLETION_GRACE_S
        said = False
        while True:
            active = [b for b in self.airflow.backfills(dag_id) if not b.get("completed_at")]
            if not active:
                return
            bf = active[0]
            busy = self._unfinished(bf)
            if not busy and bf["id"] in self._own_ids(dag_id) and self._close(bf["id"]):
                continue
            if busy or time.monotonic() > deadline:
                state = "paused" if bf.get("is_paused") else "running"
                raise BackfillRefused(
                    f"Airflow backfill {bf['id']} of {dag_id} ({iso(bf['from_date'])} .. {iso(bf['to_date'])}) "
                    f"is still {state}"
                    + (f" ({len(busy)} run(s) queued or running)" if busy else "")
                    + f": follow it with `greenlight backfill --follow {bf['id']}` or cancel it "
                    f"(PUT /api/v2/backfills/{bf['id']}/cancel) first"
                )
            if not said:
                say(f"backfill {bf['id']} of {dag_id}: every run finished; waiting for Airflow to mark it complete")
                said = True
            time.sleep(min(5.0, self.args.poll))

    # ---------------------------------------------------------------------------------- main
    def go(self) -> int:
        self.followed = None
        start, end = self._range()
        dag_id = self.args.dag_id
        dag = self._dag()
        self.start, self.end = iso(start), iso(end)
        root = cli_root(self.args.root)
        tags = [t.get("name") if isinstance(t, dict) else t for t in dag.get("tags") or []]  # {"name": ...}
        self.manifests = Manifests(dag_id, root, _structure(dag_id, tags, self.args.dags_folder))
        if self.args.follow is not None:  # the summary the backfill's own runs write (records.py)
            backfill_id = self.args.backfill_id or airflow_summary_id(self.args.follow)
        else:
            backfill_id = self.args.backfill_id or default_backfill_id(dag_id, start, end)
        self.store = store_for(root)
        self.files = SummaryFiles(self.store)
        self.rel = summary_relpath(backfill_id)
        self.summary = self.store.read(self.rel)
        if self.summary is None and self.followed is not None and backfill_id == airflow_summary_id(self.args.follow):
            self.summary = airflow_summary(self.followed, None)
        elif self.summary is None:
            self.summary = new_summary(
                backfill_id, dag_id, start, end, max_parallel=self.args.max_parallel, conf=self.conf
            )
        if self.args.follow is None and not self.args.dry_run:
            self._no_other_backfill(dag_id)  # refused (exit 2) before anything is written or started
        partitions = self._partitions(dag_id)
        if not partitions:
            raise BackfillRefused(
                f"--dag-id {dag_id}: its schedule has no partition between {self.start} and {self.end} "
                "(or none whose interval has ended yet)"
            )
        runs = latest_runs(self.airflow.runs(dag_id, partitions[0], partitions[-1]))
        views = self.manifests.by_partition(self.start, self.end)
        plan = self._plan(partitions, runs, views)
        if self.args.dry_run:
            say(
                f"{dag_id}: {len(partitions)} partition(s) {partitions[0]} .. {partitions[-1]}; "
                f"would run {len(plan['todo'])}: {plan['reason']}"
            )
            emit({"dry_run": True, "backfill_id": backfill_id, "dag_id": dag_id, "partitions": partitions, **plan})
            return 0

        summary = self.summary
        summary["uri"] = self.store.uri(self.rel)
        mode = "follow" if self.args.follow is not None else ("resume" if self.args.resume else "backfill")
        attempt = {
            "n": len(summary["attempts"]) + 1,
            "mode": mode,
            "started": iso(datetime.now(UTC)),
            "finished": None,
            "plan": plan["reason"],
            "ran": plan["todo"],
            "skipped": plan["skipped"],
            "in_flight": plan["in_flight"],
            "airflow_backfill_ids": [],
        }
        summary["attempts"].append(attempt)
        self._refresh_all(partitions, runs, views, skipped=set(plan["skipped"]), todo=set(plan["todo"]))
        self._write("running" if plan["backfills"] or plan["in_flight"] else None)
        say(f"{dag_id}: {len(partitions)} partition(s); {mode}: {plan['reason']}")
        try:
            for step in plan["backfills"]:
                airflow_id = step.get("airflow_id")
                if airflow_id is None:
                    airflow_id = self._create(dag_id, step)
                attempt["airflow_backfill_ids"].append(airflow_id)
                self._write(None)
                self._wait(dag_id, step["partitions"], airflow_id)
                if step.get("airflow_id") is None:
                    self._close(airflow_id)
            if plan["in_flight"]:
                self._wait(dag_id, plan["in_flight"], None)
        except KeyboardInterrupt:
            attempt["finished"] = iso(datetime.now(UTC))
            self._write("detached")
            ids = attempt["airflow_backfill_ids"]
            say(f"stopped following; Airflow backfill {ids[-1] if ids else '?'} goes on (`--follow` it)")
            emit({"backfill_id": backfill_id, "status": "detached", "airflow_backfill_ids": ids, "exit_code": 1})
            return 1
        # The verdict: every partition from its newest run's manifests (or Airflow's states).
        runs = latest_runs(self.airflow.runs(dag_id, partitions[0], partitions[-1]))
        self._refresh_all(partitions, runs, self.manifests.by_partition(self.start, self.end))
        attempt["finished"] = iso(datetime.now(UTC))
        self._write(None)

        say(format_table(summary))
        failed = [e["partition"] for e in summary["partitions"] if e["state"] != "success"]
        emit(
            {
                "backfill_id": backfill_id,
                "dag_id": dag_id,
                "status": summary["status"],
                "counts": summary["counts"],
                "failed": failed,
                "ran": plan["todo"],
                "skipped": plan["skipped"],
                "airflow_backfill_ids": attempt["airflow_backfill_ids"],
                "summary": summary["uri"],
            }
        )
        return 0 if summary["status"] == "succeeded" else 1

    def _partitions(self, dag_id: str) -> list[str]:
        """The DAG's partitions in the range: Airflow's own dry run (``completed``: every logical
        date the schedule has there) plus those it leaves out because a run is in flight."""

        body = self._body(dag_id, self.start, self.end, "completed")
        dates = set(self.airflow.dry_run(body))
        for run in self.airflow.runs(dag_id, self.start, self.end):
            if run.get("state") in IN_FLIGHT and run.get("logical_date"):
                dates.add(iso(run["logical_date"]))
        return sorted(dates)

    def _body(self, dag_id: str, start: str, end: str, behavior: str) -> dict:
        body = {
            "dag_id": dag_id,
            "from_date": start,
            "to_date": end,
            "reprocess_behavior": behavior,
            "max_active_runs": self.args.max_parallel,
            "run_backwards": bool(self.args.run_backwards),
        }
        if self.conf is not None:
            body["dag_run_conf"] = self.conf
        return body

    def _plan(self, partitions: list[str], runs: dict, views: dict) -> dict[str, Any]:
        state = {p: (runs[p].get("state") if p in runs else None) for p in partitions}
        if self.followed is not None:
            bf = self.followed
            pending = [p for p in partitions if state[p] in ("queued", "running")]
            return {
                "todo": partitions,
                "skipped": [],
                "in_flight": [],
                "backfills": [{"airflow_id": bf["id"], "partitions": pending}] if not bf.get("completed_at") else [],
                "reason": f"following Airflow backfill {bf['id']} (reprocess_behavior={bf.get('reprocess_behavior')})",
            }
        if self.args.resume:
            if self.manifests.enabled:
                done = {p for p in partitions if views.get(p, {}).get("complete")}
            else:  # a DAG without manifests: Airflow's run states are all there is
                done = {p for p in partitions if state[p] == "success"}
            return plan_resume(partitions, done, state)
        behavior = self.args.reprocess
        todo = [p for p in partitions if airflow_would_rerun(state[p], behavior)]
        in_flight = [p for p in partitions if state[p] in ("queued", "running")]
        return {
            "todo": todo,
            "skipped": [],
            "in_flight": in_flight,
            "backfills": [
                {"from": self.start, "to": self.end, "reprocess_behavior": behavior, "partitions": todo},
            ]
            if todo
            else [],
            "reason": f"one Airflow backfill over the range, reprocess_behavior={behavior}"
            + ("" if todo else " (every partition already has a run: nothing to create)"),
        }

    def _create(self, dag_id: str, step: dict) -> int:
        body = self._body(dag_id, step["from"], step["to"], step["reprocess_behavior"])
        if self.summary["attempts"][-1]["airflow_backfill_ids"]:
            self._no_other_backfill(dag_id)  # the previous stretch's backfill, until Airflow closes it
        try:
            bf = self.airflow.create(body)
        except GreenlightError as exc:
            if not exc.retryable:
                raise
            # The API answered 5xx or timed out, but Airflow may have made the backfill (or some of
            # its runs) all the same: adopt it rather than leave it running unwatched.
            bf = self._adopt(dag_id, step, exc)
        self.summary["airflow_backfills"].append(
            {
                "id": bf["id"],
                "from_date": iso(bf.get("from_date")),
                "to_date": iso(bf.get("to_date")),
                "reprocess_behavior": bf.get("reprocess_behavior"),
                "max_active_runs": bf.get("max_active_runs"),
                "created_at": iso(bf.get("created_at")),
                "partitions": step["partitions"],
                "attempt": self.summary["attempts"][-1]["n"],
            }
        )
        say(
            f"Airflow backfill {bf['id']}: {dag_id} {step['from']} .. {step['to']}, "
            f"reprocess_behavior={step['reprocess_behavior']}, max_active_runs={self.args.max_parallel}, "
            f"{len(step['partitions'])} partition(s) to run"
        )
        for p in step["partitions"]:
            partition_entry(self.summary, p)["runs_by_greenlight"] += 1
        return bf["id"]

    def _adopt(self, dag_id: str, step: dict, error: Exception) -> dict:
        for candidate in self.airflow.backfills(dag_id):
            if (
                not candidate.get("completed_at")
                and iso(candidate.get("from_date")) == iso(step["from"])
                and iso(candidate.get("to_date")) == iso(step["to"])
            ):
                say(
                    f"creating the backfill failed ({error}) but Airflow made backfill {candidate['id']}: following it; "
                    "a partition it did not rerun shows as failed: run --resume again"
                )
                return candidate
        raise error

    def _wait(self, dag_id: str, partitions: list[str], airflow_id: int | None) -> None:
        """Poll until each of ``partitions`` has a finished newest run, rewriting the summary as
        partitions change."""

        deadline = time.monotonic() + self.args.timeout if self.args.timeout > 0 else None
        seen: dict[str, str | None] = {}
        settle: dict[str, float] = {}
        lo, hi = min(partitions, default=self.start), max(partitions, default=self.end)
        while True:
            runs = latest_runs(self.airflow.runs(dag_id, lo, hi))
            changed = False
            for p in partitions:
                run = runs.get(p)
                state = run.get("state") if run else None
                if seen.get(p, "?") == state:
                    continue
                view = self.manifests.of_run(run["dag_run_id"]) if run and state not in IN_FLIGHT else None
                if state == "success" and view is not None and not view["complete"] and self.manifests.enabled:
                    # Airflow can call the run a success a moment before the last task's manifest
                    # says so: give the manifests a little time before judging the partition.
                    settle.setdefault(p, time.monotonic() + SETTLE_S)
                    if time.monotonic() < settle[p]:
                        continue
                seen[p] = state
                changed = True
                self._update(partition_entry(self.summary, p), run, view)
                if state not in IN_FLIGHT:
                    say(
                        f"  {p}: {partition_entry(self.summary, p)['state']} ({run['dag_run_id'] if run else 'no run'})"
                    )
            if changed:
                self._write("running")
            if all(p in seen and seen[p] not in IN_FLIGHT for p in partitions):
                return
            if deadline is not None and time.monotonic() > deadline:
                pending = [p for p in partitions if seen.get(p) in IN_FLIGHT]
                self._write("running")
                raise BackfillUnfinished(
                    f"{len(pending)} partition(s) still running after {self.args.timeout:.0f}s "
                    f"(first: {pending[0]}); Airflow backfill {airflow_id} goes on: "
                    f"`greenlight backfill --follow {airflow_id}`"
                )
            time.sleep(self.args.poll)

    def _refresh_all(self, partitions, runs, views, *, skipped=frozenset(), todo=frozenset()) -> None:
        for p in partitions:
            entry = partition_entry(self.summary, p)
            self._update(entry, runs.get(p), views.get(p))
            if p in skipped:
                entry["skipped_by_resume"] = True
            elif p in todo:
                entry["skipped_by_resume"] = False
                if self.args.follow is None:
                    entry["state"] = "queued"

    def _update(self, entry: dict, run: dict | None, view: dict | None) -> None:
        """One partition from Airflow and the manifests, stamped so that an older record of a run
        (:mod:`greenlight.backfill.records`) does not override it."""
        update_partition(entry, run, view, trust_manifests=self.manifests.enabled)
        entry["observed"] = utcnow()
        entry["seen_by"] = "greenlight backfill"

    def _write(self, status: str | None) -> None:
        """Write the summary, with the records the backfill's runs wrote folded in (newest
        observation wins), conditionally: the runs update the same file (``airflow-<N>``)."""
        ids = {int(b["id"]) for b in self.summary["airflow_backfills"]}
        if self.args.follow is not None:
            ids.add(int(self.args.follow))

        def mutate(_current: dict | None) -> dict:
            for airflow_id in sorted(ids):
                records = self.files.records(airflow_id)
                merge_records(self.summary, [r for r in records if self.start <= r["partition"] <= self.end])
            return finish(self.summary, status)

        self.summary = self.files.update(self.rel, mutate)

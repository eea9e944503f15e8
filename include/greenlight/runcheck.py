"""Run completeness: the operations runbook's 2-minute daily check as one function.

For one run of a DAG, from the task manifests the listener wrote (docs/manifests.md):

1. every expected task has a ``success`` manifest (or ``skipped``: it skipped itself); a mapped
   task has one per map index, as many as its upstream's output had items; tasks a branch did not
   choose (and what only they lead to) are expected to have none;
2. every ``current`` pointer a publishing step reported (an output entry with a ``pointer``) names
   this run, unless the entry says the run changed nothing there (``"changed": false``) or a later
   run has moved it since;
3. every manifest names the same run id.

The DAG's structure comes in as plain data (:func:`greenlight.dagsupport.runcheck.dag_structure`
builds it from a DAG object: the CLI from a ``DagBag``, the final task from its own ``dag``), so this
module imports no Airflow and touches no database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from greenlight.errors import ManifestNotFoundError
from greenlight.retrycategory import CATEGORIES
from greenlight.storage.manifests import read_manifest_uri, safe_name
from greenlight.storage.s3 import list_pages, parse_s3_uri

OK_STATES = ("success", "skipped")
#: Trigger rules under which a task whose upstream was skipped is skipped too.
SKIP_PROPAGATES = ("all_success", "all_failed", "none_skipped", "one_failed", "one_success")


# ----------------------------------------------------------------------------- reading manifests
class ManifestRoot:
    """The task manifests under ``<root>/<dag_id>/<run>/`` (a local folder or ``s3://`` root)."""

    def __init__(self, root: str, client=None):
        self.root = root
        self.client = client

    def _s3(self):
        return parse_s3_uri(self.root, what="task manifest root")

    def run_folders(self, dag_id: str) -> list[str]:
        """The (path-safe) run folder names of a DAG."""
        if self.root.startswith("s3://"):
            loc = self._s3()
            base = f"{loc.prefix}{safe_name(dag_id)}/"
            names = []
            for page in list_pages(self.client, loc.bucket, base, delimiter="/"):
                names += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", ())]
            return sorted(names)
        folder = Path(self.root) / safe_name(dag_id)
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def read_run(self, dag_id: str, run_folder: str) -> dict[str, dict[str, Any]]:
        """``"<task_id>[.<map_index>]" -> manifest`` of one run folder."""
        docs: dict[str, dict[str, Any]] = {}
        if self.root.startswith("s3://"):
            loc = self._s3()
            base = f"{loc.prefix}{safe_name(dag_id)}/{run_folder}/"
            for page in list_pages(self.client, loc.bucket, base, delimiter="/"):
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base) :]
                    if name.endswith(".json"):
                        body = self.client.get_object(Bucket=loc.bucket, Key=obj["Key"])["Body"].read()
                        docs[name[: -len(".json")]] = json.loads(body)
            return docs
        folder = Path(self.root) / safe_name(dag_id) / run_folder
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            docs[path.name[: -len(".json")]] = json.loads(path.read_text())
        return docs

    def find_run(self, dag_id: str, *, run_id: str | None = None, date: str | None = None) -> tuple[str | None, dict]:
        """The run to check and its manifests: ``run_id``; else the newest run whose logical date
        (or run id) falls on ``date`` (``YYYY-MM-DD``); else the newest run. ``(None, {})`` if none."""
        if run_id:
            return run_id, self.read_run(dag_id, safe_name(run_id))
        best: tuple[str, str, dict] | None = None
        for folder in self.run_folders(dag_id):
            docs = self.read_run(dag_id, folder)
            if not docs:
                continue
            first = next(iter(docs.values()))
            logical = str(first.get("logical_date") or "")
            rid = str(first.get("run_id") or folder)
            if date and not (logical.startswith(date) or date in rid):
                continue
            started = min(str(d.get("start") or d.get("updated") or "") for d in docs.values())
            if best is None or started > best[0]:
                best = (started, rid, docs)
        return (best[1], best[2]) if best else (None, {})


def read_json_uri(uri: str, client=None) -> dict[str, Any] | None:
    """A JSON document at an ``s3://`` URI or local path; None when it does not exist."""
    try:
        return read_manifest_uri(uri, client)
    except ManifestNotFoundError:
        return None


# ------------------------------------------------------------------------------------ the check
def task_of(name: str) -> str:
    """The task id of a manifest name (``promote.1`` -> ``promote``; dotted task-group ids kept)."""
    head, _, tail = name.rpartition(".")
    return head if head and tail.isdigit() else name


def _count(output: Any) -> int | None:
    """How many mapped instances an upstream's output makes (manifests cut lists at 50 items and
    end them with ``"…(+N more items)"``)."""
    if not isinstance(output, list):
        return None
    if output and isinstance(output[-1], str) and output[-1].startswith("…(+") and "more items" in output[-1]:
        return len(output) - 1 + int(output[-1][3:].split(" ", 1)[0])
    return len(output)


def _chosen(output: Any) -> set[str] | None:
    if isinstance(output, str):
        return {output}
    if isinstance(output, list) and all(isinstance(i, str) for i in output):
        return set(output)
    return None


def expected_instances(structure: list[dict[str, Any]], manifests: dict[str, dict]) -> dict[str, Any]:
    """Which task instances the run should have manifests for.

    Returns ``{"expected": {name: task_id}, "skipped_by_branch": [task_id], "skipped_after_skip":
    [task_id], "unknown": {task_id: why}}`` where ``name`` is ``task_id`` or ``task_id.<map_index>``;
    ``skipped_after_skip`` are the tasks the scheduler skips after an upstream skipped itself (e.g.
    on a dry run) or mapped over an empty list.
    """
    by_id = {t["task_id"]: t for t in structure}
    skipped: set[str] = set()
    for task in structure:
        if not task.get("branch"):
            continue
        doc = manifests.get(task["task_id"])
        if not doc or doc.get("state") != "success":
            continue
        # Airflow 3 skips by raising DownstreamTasksSkipped, so a branch's choice is usually not
        # its output: the chosen direct downstream tasks are those that ran (left a manifest).
        chosen = _chosen(doc.get("outputs"))
        if chosen is None:
            ran = {task_of(name) for name in manifests}
            chosen = {d for d in task.get("downstream", ()) if d in ran} or None
        if chosen is not None:
            skipped |= {d for d in task.get("downstream", ()) if d not in chosen}
    # Skips also start at a task that skipped itself (its manifest says so) and at a mapped task
    # over an empty list (Airflow skips it): both are expected, and so is what only they lead to.
    sources = {task_of(name) for name, doc in manifests.items() if doc.get("state") == "skipped"}
    for task in structure:
        if task.get("mapped") and task.get("map_source") and not by_id.get(task["map_source"], {}).get("mapped"):
            doc = manifests.get(task["map_source"])
            if doc and doc.get("state") == "success" and _count(doc.get("outputs")) == 0:
                sources.add(task["task_id"])
    by_branch = _propagate(structure, skipped)
    after_skip = _propagate(structure, by_branch | sources) - by_branch - sources

    counts: dict[str, int | None] = {}
    unknown: dict[str, str] = {}

    def count_of(task_id: str) -> int | None:
        if task_id in counts:
            return counts[task_id]
        task = by_id[task_id]
        counts[task_id] = None
        if task.get("map_literal") is not None:
            counts[task_id] = int(task["map_literal"])
        elif task.get("map_source"):
            source = by_id.get(task["map_source"])
            if source is not None and source.get("mapped"):
                counts[task_id] = count_of(source["task_id"])
            else:
                doc = manifests.get(task["map_source"])
                if doc and doc.get("state") == "success":
                    counts[task_id] = _count(doc.get("outputs"))
        if counts[task_id] is None:
            unknown[task_id] = f"map count unknown: upstream {task.get('map_source')!r} has no successful output"
        return counts[task_id]

    expected: dict[str, str] = {}
    for task in structure:
        task_id = task["task_id"]
        if task_id in by_branch or task_id in after_skip or task.get("self"):
            continue
        if not task.get("mapped"):
            expected[task_id] = task_id
            continue
        n = count_of(task_id)
        for i in range(n or 0):
            expected[f"{task_id}.{i}"] = task_id
    return {
        "expected": expected,
        "skipped_by_branch": sorted(by_branch),
        "skipped_after_skip": sorted(after_skip),
        "unknown": unknown,
    }


def _propagate(structure: list[dict[str, Any]], start: set[str]) -> set[str]:
    """``start`` and every task the scheduler skips because of them (a task whose upstream was
    skipped is skipped under the trigger rules in :data:`SKIP_PROPAGATES`)."""
    skipped = set(start)
    changed = True
    while changed:
        changed = False
        for task in structure:
            if task["task_id"] in skipped or task.get("trigger_rule", "all_success") not in SKIP_PROPAGATES:
                continue
            if set(task.get("upstream", ())) & skipped:
                skipped.add(task["task_id"])
                changed = True
    return skipped


def _later(a: Any, b: Any) -> bool:
    """True when timestamp ``a`` is after ``b`` (ISO strings, ``Z`` or offsets)."""
    try:
        return datetime.fromisoformat(str(a)) > datetime.fromisoformat(str(b))
    except (TypeError, ValueError):
        return False


def _restored_by(pointer: dict[str, Any]) -> Any:
    """The run that put a pointer back (a rollback keeps the restored head's own run id in
    ``run_id`` and names itself in ``restored_from.by_run``)."""
    restored = pointer.get("restored_from")
    return restored.get("by_run") if isinstance(restored, dict) else None


def _pointer_entries(output: Any) -> list[dict[str, Any]]:
    items = output if isinstance(output, list) else [output]
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("pointer"), str)]


def check_run(
    dag_id: str,
    run_id: str | None,
    structure: list[dict[str, Any]],
    manifests: dict[str, dict[str, Any]],
    *,
    read_pointer: Callable[[str], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The completeness report of one run (see the module docs). ``complete`` is the verdict;
    ``missing`` lists every problem in one line each."""
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    categories = {t["task_id"]: t.get("category") for t in structure}
    if run_id is None:
        return {
            "dag_id": dag_id,
            "run_id": None,
            "complete": False,
            "tasks": [],
            "pointers": [],
            "missing": [f"no run of {dag_id} has task manifests"],
        }
    plan = expected_instances(structure, manifests)
    for name, task_id in sorted(plan["expected"].items()):
        doc = manifests.get(name)
        state = doc.get("state") if doc else None
        ok = state in OK_STATES
        row = {"task": name, "state": state or "no manifest", "ok": ok, "category": categories.get(task_id)}
        if doc and doc.get("error"):
            row["error"] = f"[{doc['error'].get('kind')}] {str(doc['error'].get('message') or '')[:200]}"
        rows.append(row)
        if not ok:
            what = "has no task manifest" if doc is None else f"is {state}"
            advice = CATEGORIES.get(row["category"] or "", "")
            missing.append(f"{name} {what}" + (f" (retry category {row['category']}: {advice})" if advice else ""))
    for task_id, why in sorted(plan["unknown"].items()):
        missing.append(f"{task_id}: {why}")
    extra = sorted(set(manifests) - set(plan["expected"]) - {t["task_id"] for t in structure if t.get("self")})
    for name in extra:
        if (
            task_of(name) in plan["skipped_by_branch"] + plan["skipped_after_skip"]
            and manifests[name].get("state") in OK_STATES
        ):
            continue
        state = manifests[name].get("state")
        rows.append({"task": name, "state": state, "ok": state in OK_STATES, "category": None, "unexpected": True})
        if state not in OK_STATES:
            missing.append(f"{name} is {state}")
    for name, doc in sorted(manifests.items()):
        if doc.get("run_id") != run_id:
            missing.append(f"{name}: manifest names run {doc.get('run_id')!r}, not {run_id!r}")

    pointers = []
    for name, doc in sorted(manifests.items()):
        if doc.get("state") != "success":
            continue
        for entry in _pointer_entries(doc.get("outputs")):
            where = entry["pointer"]
            pointer = read_pointer(where) if read_pointer else None
            named = (pointer or {}).get("run_id")
            expect_move = entry.get("changed", True) is not False
            row = {"task": name, "pointer": where, "names_run": named, "expected_move": expect_move}
            if pointer is None:
                row["ok"] = False
                missing.append(f"{name}: current pointer {where} does not exist")
            elif not expect_move or named == run_id or _restored_by(pointer) == run_id:
                row["ok"] = True
            elif _later(pointer.get("published_at"), doc.get("end")):
                row.update(ok=True, superseded=True)  # a later run published since
            else:
                row["ok"] = False
                missing.append(f"{name}: current pointer {where} did not move to run {run_id} (it names {named!r})")
            pointers.append(row)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "complete": not missing,
        "tasks": rows,
        "pointers": pointers,
        "skipped_by_branch": plan["skipped_by_branch"],
        "skipped_after_skip": plan["skipped_after_skip"],
        "missing": missing,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (tasks, then pointers, then what is missing)."""
    lines = [f"run {report['run_id']} of {report['dag_id']}: {'COMPLETE' if report['complete'] else 'INCOMPLETE'}"]
    width = max([len(r["task"]) for r in report["tasks"]] + [4])
    lines.append(f"{'task':<{width}}  {'state':<12} cat  ok")
    for row in report["tasks"]:
        flag = "ok" if row["ok"] else "MISSING"
        lines.append(f"{row['task']:<{width}}  {row['state']:<12} {row.get('category') or '-':<4} {flag}")
    for name in report.get("skipped_by_branch", ()):
        lines.append(f"{name:<{width}}  {'(branch)':<12} -    not chosen by the branch")
    for name in report.get("skipped_after_skip", ()):
        lines.append(f"{name:<{width}}  {'(skipped)':<12} -    an upstream task skipped (expected)")
    for row in report["pointers"]:
        flag = "ok" if row["ok"] else "NOT MOVED"
        note = " (moved on by a later run)" if row.get("superseded") else ""
        lines.append(f"pointer {row['pointer']} -> run {row['names_run']}: {flag}{note}")
    lines += [f"missing: {m}" for m in report["missing"]]
    return "\n".join(lines)

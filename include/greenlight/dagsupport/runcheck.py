"""Run completeness for Airflow: a DAG's structure as plain data, and the final task that checks
its own run (the runbook's daily checklist inside the run).

:func:`dag_structure` reads a DAG object (the CLI's ``DagBag``, or the task's own ``dag``); it
never touches the metadata database. The check itself is :func:`greenlight.runcheck.check_run`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from greenlight.backfill.plan import manifest_view
from greenlight.backfill.records import is_backfill_run, partition_record
from greenlight.dagsupport.backfillsummary import report_partition
from greenlight.dagsupport.runtime import s3_client
from greenlight.dagsupport.taskmanifest import manifest_root
from greenlight.errors import ConfigError, GreenlightError
from greenlight.retrycategory import category_of
from greenlight.runcheck import ManifestRoot, check_run, format_table, read_json_uri

log = logging.getLogger("greenlight.dagsupport.runcheck")

CHECK_TASK_ID = "check_run"


class RunIncompleteError(GreenlightError):
    """The run is missing task manifests or pointers (exit 1; not retried: rerun what is listed)."""

    kind = "failed"


def _is_branch(task: Any) -> bool:
    return any(cls.__name__ in ("BranchMixIn", "BaseBranchOperator") for cls in type(task).__mro__)


def is_mapped(task: Any) -> bool:
    """A mapped task (``.expand``): TaskFlow's ``DecoratedMappedOperator`` included."""
    return bool(getattr(task, "is_mapped", False)) or any(c.__name__ == "MappedOperator" for c in type(task).__mro__)


def _map_input(task: Any) -> tuple[str | None, int | None]:
    """(upstream task id whose output a mapped task expands over, or the length of a literal list)."""
    # TaskFlow keeps the mapped arguments in op_kwargs_expand_input (expand_input is left empty).
    getter = getattr(task, "_get_specified_expand_input", None)
    expand_input = getter() if callable(getter) else getattr(task, "expand_input", None)
    value = getattr(expand_input, "value", None)
    values = value.values() if isinstance(value, dict) else [value]
    for item in values:
        operator = getattr(item, "operator", None)
        if operator is not None:
            return operator.task_id, None
        if isinstance(item, list | tuple):
            return None, len(item)
    return None, None


def dag_structure(dag: Any, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One dict per task: id, upstream/downstream ids, mapped (and over what), branch, trigger
    rule, retry category. Tasks in ``exclude`` (the checking task itself) are marked ``self``."""
    out = []
    for task in dag.tasks:
        mapped = is_mapped(task)
        source, literal = _map_input(task) if mapped else (None, None)
        rule = getattr(task, "trigger_rule", "all_success")
        out.append(
            {
                "task_id": task.task_id,
                "upstream": sorted(task.upstream_task_ids),
                "downstream": sorted(task.downstream_task_ids),
                "mapped": mapped,
                "map_source": source,
                "map_literal": literal,
                "branch": _is_branch(task),
                "trigger_rule": str(getattr(rule, "value", rule)),
                "category": category_of(getattr(task, "doc_md", None)),
                "self": task.task_id in exclude,
            }
        )
    return out


def manifest_root_reader():
    """A :class:`greenlight.runcheck.ManifestRoot` for the configured task-manifest root, and the
    client used to read ``s3://`` pointers (from the ``aws_default`` connection)."""
    root = manifest_root()
    if root is None:
        raise ConfigError("task manifests are turned off (GREENLIGHT_TASK_MANIFEST_ROOT=none): nothing to check")
    client = None
    if root.startswith("s3://"):
        client = s3_client(max_pool=8)
    return ManifestRoot(root, client)


#: How long the final task waits for task manifests still being written (the listener writes a
#: manifest in the task's process just after Airflow records its state).
SETTLE_S = 20.0


def check_own_run(
    dag: Any, run_id: str, *, task_id: str = CHECK_TASK_ID, settle_s: float = SETTLE_S, dag_run: Any = None
) -> dict[str, Any]:
    """Body of the final ``check_run`` task: check this run's manifests (except its own).

    A complete ``backfill`` run (``dag_run`` from the task context) also records its partition in
    its backfill's summary (:func:`greenlight.dagsupport.backfillsummary.report_partition`).

    With task manifests turned off there is nothing to check: the task skips itself (the run's
    state is then its other tasks' alone). A manifest that is missing or still says ``running``
    is re-read for up to ``settle_s`` seconds before the run is called incomplete."""
    if manifest_root() is None:
        # local: airflow.sdk costs ~2 s to import; the CLI's check-run imports this module without Airflow
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(
            "task manifests are turned off (GREENLIGHT_TASK_MANIFEST_ROOT=none): nothing to check"
        )
    reader = manifest_root_reader()
    clients = {"s3": reader.client}

    def read_pointer(uri: str):
        if uri.startswith("s3://") and clients["s3"] is None:
            clients["s3"] = s3_client(max_pool=4)
        return read_json_uri(uri, clients["s3"] if uri.startswith("s3://") else None)

    structure = dag_structure(dag, exclude=(task_id,))
    deadline = time.monotonic() + settle_s
    while True:
        _, manifests = reader.find_run(dag.dag_id, run_id=run_id)
        manifests.pop(task_id, None)
        report = check_run(dag.dag_id, run_id, structure, manifests, read_pointer=read_pointer)
        settling = [r["task"] for r in report["tasks"] if r["state"] in ("no manifest", "running")]
        if report["complete"] or not settling or time.monotonic() >= deadline:
            break
        log.info("waiting for the task manifests of %s", ", ".join(settling))
        time.sleep(1.0)
    for line in format_table(report).splitlines():
        log.info("%s", line)
    if not report["complete"]:
        raise RunIncompleteError(f"run {run_id} of {dag.dag_id} is incomplete: " + "; ".join(report["missing"][:20]))
    if is_backfill_run(dag_run):  # (the manifest view is only worth building for a backfill run)
        report_partition(
            partition_record(dag_run, "success", seen_by="check_run", view=manifest_view(report, manifests))
        )
    return {"complete": True, "tasks": len(report["tasks"]), "pointers": len(report["pointers"])}

"""What every greenlight DAG shares at parse time: default task arguments, the schedule-from-env rule,
the Asset alias names and the header of the manual DAGs.

Only DAG files (and the dataset DAG factory) import this module, after ``airflow.sdk``: its Airflow,
pendulum, notifier and retry-policy imports add nothing to their parse time (measured: 0 ms)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag

from greenlight.dagsupport.notify import default_notifier
from greenlight.dagsupport.runtime import retry_policy

#: Asset alias through which ``artefact_promotion``'s ``verify`` emits one event per verified prod prefix.
PROMOTED_ALIAS = "greenlight-promoted-prefixes"


def default_args(*, owner: str = "platform", retries: int = 3, retry_delay_s: int = 20, **extra: Any) -> dict:
    """Retries with exponential backoff (capped at 10 min) and the failure notifier on every task.

    Failures that a retry cannot fix never use these retries: task bodies are ``triaged``, and the
    retry policy fails any non-retryable error class at once and gives ``service`` errors (refused
    connection, port in use) a longer backoff (``greenlight.dagsupport.runtime.retry_policy``).
    """
    return {
        "owner": owner,
        "on_failure_callback": default_notifier(),  # log / SMTP / Slack / Sentry as configured
        "retries": retries,
        "retry_delay": timedelta(seconds=retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "retry_policy": retry_policy(),
        **extra,
    }


def schedule_from_env(var: str, default: str) -> str | None:
    """A cron (UTC) from ``$var``, ``default`` when unset; ``none`` = manual runs only.

    An env var, not a Variable: read at parse time for free."""
    value = os.environ.get(var, default)
    return None if value.strip().lower() == "none" else value


def documented(decorated):
    """A TaskFlow task about to be mapped, with its docstring as ``doc_md``.

    Airflow 3.3 copies a TaskFlow function's docstring into ``doc_md`` only for unmapped tasks;
    a mapped task shows no doc in the UI unless it is passed explicitly, which this does."""
    return decorated.override(doc_md=decorated.function.__doc__)


def manual_dag(dag_id: str, doc: str, *, tags: list[str], params: dict, on_failure_callback=None, **args: Any):
    """The ``@dag`` decorator of a manually triggered greenlight DAG (no schedule, one run at a
    time, no catchup, the tag ``greenlight`` first, ``doc_md`` from the file's docstring).

    ``args`` go to :func:`default_args` (``retries``, ``retry_delay_s``, ``owner``);
    ``on_failure_callback`` is the DAG's (called once when a run fails)::

        @manual_dag("staging_refresh", __doc__, tags=["refresh"], params={...}, retries=2)
        def staging_refresh(): ...
    """
    return dag(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        doc_md=doc,
        default_args=default_args(**args),
        tags=["greenlight", *tags],
        params=params,
        on_failure_callback=on_failure_callback,
    )


CHECK_DOC = """The operations runbook's 2-minute daily check, for this run: every expected task (mapped ones
by map index) has a `success` (or expected `skipped`) task manifest, every `current` pointer a
publishing step reported moved to this run, and every manifest names this run id. Trigger rule
`none_failed`: it runs after the last tasks succeeded or were skipped (a branch not taken, a dry
run); when a task failed it is `upstream_failed` and the run stays failed on that task alone.
`greenlight check-run --dag-id <dag> --run-id <run>` prints the same table for any run.

Retry category: A — read-only; clear in place once what it lists is fixed (rerun the tasks it names).
"""


def record_backfill_failure(context: Any) -> None:
    """``on_failure_callback`` that :func:`add_run_check` gives every task: in a ``backfill`` run,
    the failed partition goes into ``backfills/airflow-<N>/summary.json``
    (:mod:`greenlight.dagsupport.backfillsummary`; its code is imported only when a task fails)."""
    # local: the backfill records code loads only when a task fails, not at DAG parse
    from greenlight.dagsupport.backfillsummary import on_task_failure

    on_task_failure(context)


def _with_callback(callbacks: Any, extra: Any) -> list:
    current = list(callbacks) if isinstance(callbacks, list | tuple) else ([callbacks] if callbacks else [])
    return current if extra in current else [*current, extra]


def run_check(dag=None, run_id=None, dag_run=None) -> dict:
    """The body of the ``check_run`` task :func:`add_run_check` adds (context values by name)."""
    from greenlight.dagsupport.runcheck import check_own_run  # the check's code: at run time only

    return check_own_run(dag, run_id, dag_run=dag_run)


def add_run_check(target: Any) -> Any:
    """Add the final ``check_run`` task to the DAG ``target``, downstream of every task without
    one (its leaves); returns ``target``. Call it on the built DAG: ``add_run_check(my_dag())``.

    It also makes a backfill run report its partition: ``check_run`` records a success, and every
    task gets :func:`record_backfill_failure` as an extra ``on_failure_callback`` (docs/backfills.md).

    Parse cost: one ``PythonOperator`` (not ``@task``: the dataset factory adds it to every
    generated DAG, and TaskFlow's decorator doubled that file's parse CPU at 300 DAGs, measured
    0.16 -> 0.33 s, vs 0.27 s with this operator); the check's code is imported only when it runs."""
    leaves = [t for t in target.tasks if not t.downstream_task_ids]
    check = PythonOperator(
        task_id="check_run", python_callable=run_check, trigger_rule="none_failed", dag=target, doc_md=CHECK_DOC
    )
    check.set_upstream(leaves)
    for each in target.tasks:
        each.on_failure_callback = _with_callback(each.on_failure_callback, record_backfill_failure)
    return target

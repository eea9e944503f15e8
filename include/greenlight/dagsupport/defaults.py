"""What every greenlight DAG shares at parse time: default task arguments, the schedule-from-env rule,
the Asset alias names and the header of the manual DAGs (cheap to import: stdlib only at module
level; Airflow and pendulum, which every DAG file has loaded already, inside the functions)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

#: Asset alias through which ``artefact_promotion``'s ``verify`` emits one event per verified prod prefix.
PROMOTED_ALIAS = "greenlight-promoted-prefixes"


def default_args(*, owner: str = "platform", retries: int = 3, retry_delay_s: int = 20, **extra: Any) -> dict:
    """Retries with exponential backoff (capped at 10 min) and the failure notifier on every task.

    Failures that a retry cannot fix never use these retries: task bodies are ``triaged``, and the
    retry policy fails any non-retryable error class at once and gives ``service`` errors (refused
    connection, port in use) a longer backoff (``greenlight.dagsupport.runtime.retry_policy``).
    """
    from greenlight.dagsupport.notify import default_notifier
    from greenlight.dagsupport.runtime import retry_policy

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


def manual_dag(dag_id: str, doc: str, *, tags: list[str], params: dict, **args: Any):
    """The ``@dag`` decorator of a manually triggered greenlight DAG (no schedule, one run at a
    time, no catchup, the tag ``greenlight`` first, ``doc_md`` from the file's docstring).

    ``args`` go to :func:`default_args` (``retries``, ``retry_delay_s``, ``owner``)::

        @manual_dag("staging_refresh", __doc__, tags=["refresh"], params={...}, retries=2)
        def staging_refresh(): ...
    """
    import pendulum
    from airflow.sdk import dag

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
    )

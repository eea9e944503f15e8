"""Helpers every greenlight task uses: S3 clients from Airflow connections and error triage."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from greenlight.dagsupport.api import AirflowApi, base_url_from
from greenlight.errors import ConfigError, GreenlightError
from greenlight.redact import clean_message, scrub_exception
from greenlight.triage import classify, is_control_flow

# Airflow imports below are function-local on purpose: this module must stay importable without
# Airflow (~2 s to import airflow.sdk) because the CLI (check-run, backfill) reaches it
# through greenlight.dagsupport.runcheck; DAG files have Airflow loaded anyway.
# Every DAG file imports this module at parse time: greenlight.storage.s3 and the task manifests
# (~25 ms together, measured after airflow.sdk) are imported where a task needs them.

log = logging.getLogger("greenlight.tasks")

F = TypeVar("F", bound=Callable[..., Any])

AWS_CONN_ENV = "GREENLIGHT_AWS_CONN_ID"
DEFAULT_AWS_CONN_ID = "aws_default"


def aws_conn_id() -> str:
    return os.environ.get(AWS_CONN_ENV, DEFAULT_AWS_CONN_ID)


def s3_client(conn_id: str | None = None, *, max_pool: int = 64):
    """A tuned boto3 S3 client built from an Airflow AWS connection (endpoint URL in its extra).

    Credentials, role assumption and ``endpoint_url`` come from the connection through the
    Amazon provider's hook, so secrets never pass through greenlight's code or logs.
    """
    # local: the Amazon provider's hook imports boto3 (~0.26 s on top of Airflow), needed only when a task runs
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from greenlight.storage.s3 import client_config, tune_client  # local: parse cost, see the note at the top

    hook = AwsBaseHook(aws_conn_id=conn_id or aws_conn_id(), client_type="s3")
    return tune_client(hook.get_client_type(config=client_config(max_pool=max_pool)))


MLFLOW_CONN_ID = "mlflow_default"


def mlflow_tracking_uri(conn_id: str = MLFLOW_CONN_ID) -> str | None:
    """The MLflow tracking URI: the Airflow connection ``mlflow_default`` when it exists (extra
    ``tracking_uri``, else ``schema://host:port``), otherwise ``$MLFLOW_TRACKING_URI``."""
    from airflow.sdk import BaseHook  # local: airflow.sdk ~2 s, see the note at the top

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - a missing connection means "use the env var"
        conn = None
    if conn is not None:
        extra = conn.extra_dejson or {}
        if extra.get("tracking_uri"):
            return str(extra["tracking_uri"])
        if conn.host:
            scheme = conn.schema or "http"
            return f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
    return os.environ.get("MLFLOW_TRACKING_URI") or None


AIRFLOW_API_CONN_ID = "airflow_api"
AIRFLOW_API_CONN_ENV = "GREENLIGHT_AIRFLOW_API_CONN_ID"


def airflow_api(conn_id: str | None = None):
    """A REST client for this Airflow (pausing consumer DAGs) from the connection ``airflow_api``:
    host = API base URL (e.g. ``http://airflow-apiserver:8080``), login + password of an API user."""
    from airflow.sdk import BaseHook  # local: airflow.sdk ~2 s, see the note at the top

    conn_id = conn_id or os.environ.get(AIRFLOW_API_CONN_ENV, AIRFLOW_API_CONN_ID)
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - the SDK raises its own not-found type
        raise ConfigError(
            f"Airflow connection {conn_id!r} is not defined: it is needed to pause prod consumer DAGs "
            "(host = the API base URL, login/password = an API user)"
        ) from exc
    if not conn.login:
        raise ConfigError(f"Airflow connection {conn_id!r} has no login: pausing DAGs needs an API user")
    return AirflowApi(base_url_from(conn.host, conn.port, conn.schema), conn.login, conn.password or "")


def _current_ti():
    """The running task instance (None outside a task): for hints that name this run's manifests."""
    try:
        from airflow.sdk import get_current_context  # local: airflow.sdk ~2 s, see the note at the top

        return get_current_context().get("ti")
    except Exception:  # noqa: BLE001 - no task context (CLI, unit test): hints stay generic
        return None


def do_not_retry_message(kind: str, exc: BaseException, hint: str) -> str:
    """The message of a failure a retry cannot fix (retry category C: fix the cause first)."""
    return f"[{kind}] {exc} — do not retry: fix the cause first. Hint: {hint}"


class RedactedError(GreenlightError):
    """Stands in for an exception whose message held a credential that could not be redacted in
    place: same triage class, redacted message, no traceback of the original."""

    def __init__(self, message: str | None, *, kind: str, retryable: bool):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def triaged(func: F) -> F:
    """Run a task body; errors that a retry cannot fix fail the task at once (no retries).

    :func:`greenlight.triage.classify` decides: refusals, bad config or params, permission
    errors (AccessDenied, bad keys), contract and verification failures, stale prefixes and missing
    inputs raise ``AirflowFailException("[kind] message — do not retry: …")``; transient errors
    (network, timeouts, S3 5xx, throttling), service errors (connection refused, port in use) and
    unknown ones propagate unchanged so Airflow retries them (service errors with the longer
    backoff of :class:`GreenlightRetryPolicy`). Either way the log names the class and the operator
    hint; a missing input's hint names the upstream task manifests of the same run. Airflow's own
    flow-control exceptions (skip, defer, reschedule) pass through untouched.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            # local: airflow.sdk ~2 s (CLI), the task manifests ~25 ms per DAG file parse; see the top.
            # taskmanifest also imports this module (s3_client).
            from airflow.sdk.exceptions import AirflowFailException

            from greenlight.dagsupport.taskmanifest import contextual_triage

            if is_control_flow(exc) or isinstance(exc, AirflowFailException):
                raise
            triage = contextual_triage(exc, _current_ti())
            message = clean_message(exc.args[0] if len(exc.args) == 1 else exc)  # no credentials in URLs
            # Airflow logs the traceback of what the task raises, causes included: their messages
            # are redacted in place first; one that cannot be is not raised (the stand-in keeps the class).
            scrubbed = scrub_exception(exc)
            if not scrubbed:
                message = clean_message(str(exc))
            if triage.retryable:
                log.warning("[%s] %s — Airflow will retry. Hint: %s", triage.kind, message, triage.hint)
                if scrubbed:
                    raise
                raise RedactedError(message, kind=triage.kind, retryable=True) from None
            log.error("[%s] %s — failing without retry. Hint: %s", triage.kind, message, triage.hint)
            failure = AirflowFailException(do_not_retry_message(triage.kind, message, triage.hint))
            if scrubbed:
                raise failure from exc
            raise failure from RedactedError(message, kind=triage.kind, retryable=False)

    return wrapper  # type: ignore[return-value]


SERVICE_RETRY_ENV = "GREENLIGHT_SERVICE_RETRY_DELAY_S"
DEFAULT_SERVICE_RETRY_S = 120.0
MAX_SERVICE_RETRY_S = 1800.0


def service_retry_delay(try_number: int) -> float:
    """Seconds before retrying a ``service`` failure: ``$GREENLIGHT_SERVICE_RETRY_DELAY_S``
    (default 120) doubled per try, capped at 30 minutes — a flapping or duplicated service takes
    longer to sort out than a network blip."""
    try:
        base = float(os.environ.get(SERVICE_RETRY_ENV) or DEFAULT_SERVICE_RETRY_S)
    except ValueError:
        base = DEFAULT_SERVICE_RETRY_S
    return min(base * 2 ** max(try_number - 1, 0), MAX_SERVICE_RETRY_S)


def retry_policy():
    """The :class:`GreenlightRetryPolicy` every greenlight task gets through ``default_args``.

    Built lazily so that importing this module does not import the Task SDK."""
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy  # local: ~2 s, see the top

    class GreenlightRetryPolicy(RetryPolicy):
        """Airflow 3 retry policy from the triage class of the exception the task raised.

        Non-retryable classes fail at once (also for tasks not wrapped in ``triaged``); ``service``
        is retried after :func:`service_retry_delay`; everything else keeps the task's retries and
        exponential backoff. Runs in the worker; the scheduler only sees the decision.
        """

        def evaluate(self, exception, try_number, max_tries, context=None):
            triage = classify(exception)
            if not triage.retryable:
                return RetryDecision.fail(f"[{triage.kind}] do not retry: {triage.hint}")
            if triage.kind == "service":
                delay = timedelta(seconds=service_retry_delay(try_number))
                return RetryDecision.retry(delay, f"[service] retry in {delay}: {triage.hint}")
            return RetryDecision.default()

        def serialize(self) -> dict[str, Any]:
            return {"__type": "GreenlightRetryPolicy"}

    return GreenlightRetryPolicy()

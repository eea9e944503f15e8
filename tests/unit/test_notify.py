"""The failure notifier against a real (local) SMTP server and a real HTTP server standing in for
Slack; connections come from ``AIRFLOW_CONN_*`` env vars, read through Airflow's Task SDK.

``SmtpSink`` and ``HttpSink`` are also used by tests/dags/test_task_manifests.py, where Airflow itself
calls the notifier as the probe DAG's ``on_failure_callback``.
"""

from __future__ import annotations

import base64
import email
import html
import json
import logging
import re
import socket
import socketserver
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from greenlight.dagsupport.notify import GreenlightFailureNotifier, default_notifier, slack_webhook_url
from greenlight.errors import ContractError, RefusedError


class SmtpSink:
    """A tiny SMTP server (EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA) keeping what it receives."""

    def __init__(self):
        self.messages: list[dict] = []
        self.logins: list[tuple[str, str]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write((line + "\r\n").encode())

            def handle(self):
                self.reply("220 sink ESMTP")
                rcpt: list[str] = []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode().rstrip("\r\n")
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                    elif verb == "AUTH":
                        parts = line.split()
                        if parts[1].upper() == "PLAIN":
                            token = parts[2] if len(parts) > 2 else None
                            if token is None:
                                self.reply("334 ")
                                token = self.rfile.readline().decode().strip()
                            _, user, password = base64.b64decode(token).decode().split("\0")
                        else:
                            self.reply("334 VXNlcm5hbWU6")
                            user = base64.b64decode(self.rfile.readline().strip()).decode()
                            self.reply("334 UGFzc3dvcmQ6")
                            password = base64.b64decode(self.rfile.readline().strip()).decode()
                        sink.logins.append((user, password))
                        self.reply("235 ok")
                    elif verb == "MAIL":
                        rcpt = []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        rcpt.append(line.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        msg = email.message_from_bytes(b"".join(data))
                        part = next(p for p in msg.walk() if p.get_content_maintype() == "text")
                        payload = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
                        payload = payload.replace("\r\n", "\n")
                        sink.messages.append(
                            {
                                "subject": msg["Subject"],
                                "from": msg["From"],
                                "to": rcpt,
                                "type": part.get_content_type(),
                                "raw": payload,
                                # What a reader sees: an HTML body rendered as text.
                                "body": html.unescape(re.sub(r"<[^>]+>", "", payload))
                                if part.get_content_subtype() == "html"
                                else payload,
                            }
                        )
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def __enter__(self) -> SmtpSink:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpSink:
    """An HTTP server that records each POST (path, body) and answers ``status``."""

    def __init__(self, status: int = 200):
        self.requests: list[dict] = []
        self.status = status
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                sink.requests.append({"path": self.path, "body": body, "type": self.headers.get("Content-Type")})
                reply = b"ok" if sink.status < 300 else b"invalid_token"
                self.send_response(sink.status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> HttpSink:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------------------------
@pytest.fixture
def channels(monkeypatch):
    """SMTP + Slack stand-ins wired through Airflow connections, with passwords to keep secret."""
    secrets = {"smtp": "smtp-" + uuid.uuid4().hex, "slack": "T0/B0/" + uuid.uuid4().hex}
    with SmtpSink() as smtp, HttpSink() as slack:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENLIGHT_SMTP",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "login": "alerts",
                    "password": secrets["smtp"],
                    "extra": {"to": "oncall@example.test, data@example.test", "from": "greenlight@example.test"},
                }
            ),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENLIGHT_SLACK",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": slack.port,
                    "schema": "http",
                    "password": secrets["slack"],
                }
            ),
        )
        monkeypatch.delenv("GREENLIGHT_NOTIFY_CHANNELS", raising=False)
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.test/")
        yield SimpleNamespace(smtp=smtp, slack=slack, secrets=secrets)


def task_context(exc: BaseException, *, map_index: int = -1, try_number: int = 3, max_tries: int = 2) -> dict:
    """The keys Airflow's task runner puts in a failure callback's context."""
    ti = SimpleNamespace(
        dag_id="artefact_promotion",
        run_id="manual__2026-11-21T08:00:00+00:00",
        task_id="promote",
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
    )
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "exception": exc}


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - we want the raised object with its traceback
        return caught


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
    from greenlight.dagsupport.notify import _tls_flag

    assert _tls_flag({}, "ssl", "disable_ssl") is False  # greenlight's documented default
    assert _tls_flag({"ssl": True, "disable_ssl": True}, "ssl", "disable_ssl") is True
    assert _tls_flag({"disable_tls": False}, "starttls", "disable_tls") is True

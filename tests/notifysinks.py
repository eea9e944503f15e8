"""Local stand-ins for the failure notifier's receivers: a real SMTP server and a real HTTP server
standing in for Slack, the ``channels`` fixture wiring them through ``AIRFLOW_CONN_*`` connections,
and the callback context Airflow passes a notifier. Used by tests/integration/test_notify.py,
tests/dags/test_task_manifests.py and the triage flowchart tests (a helper module on ``pythonpath``,
so any test folder can import it)."""

from __future__ import annotations

import base64
import email
import html
import json
import re
import socketserver
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest


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
def smtp_connection(smtp: SmtpSink, password: str, to: str) -> str:
    """The ``greenlight_smtp`` connection (JSON) for ``smtp``: user ``alerts``, mail to ``to``."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp.port,
            "login": "alerts",
            "password": password,
            "extra": {"to": to, "from": "greenlight@example.test"},
        }
    )


@pytest.fixture
def channels(monkeypatch):
    """SMTP + Slack stand-ins wired through Airflow connections, with passwords to keep secret."""
    secrets = {"smtp": "smtp-" + uuid.uuid4().hex, "slack": "T0/B0/" + uuid.uuid4().hex}
    with SmtpSink() as smtp, HttpSink() as slack:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENLIGHT_SMTP",
            smtp_connection(smtp, secrets["smtp"], "oncall@example.test, data@example.test"),
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

"""Failure alerts: an Airflow 3 notifier that says which task failed, what class of error it was,
what to do about it, and where its log is.

Use it as a task callback (in ``default_args``, so every task has it)::

    from greenlight.dagsupport.notify import default_notifier

    default_args = {..., "on_failure_callback": default_notifier()}

Airflow calls task failure callbacks in the task process once the task has *finally* failed
(a try that will be retried calls ``on_retry_callback`` instead, so a transient blip that a retry
fixes sends nothing). It also works as a DAG-level ``on_failure_callback`` (then without a task).

Channels (each one independent: one that fails is logged and the others still send):

- ``log`` — always: one ERROR line on the ``greenlight.dagsupport.notify`` logger (the task log).
- ``smtp`` — when the Airflow connection ``greenlight_smtp`` exists: host, port, optional
  login/password; extra ``{"to": "a@x, b@y", "from": "...", "starttls": false, "ssl": false}``.
  Sent by the SMTP provider's ``SmtpNotifier`` (apache-airflow-providers-smtp) as an HTML mail
  whose body is the alert text in a ``<pre>`` block. The provider's own extras (``from_email``,
  ``disable_ssl``, ``disable_tls``, ``timeout``, ``retry_limit``) work too; when neither
  ``ssl``/``starttls`` nor ``disable_ssl``/``disable_tls`` is set, the mail goes without TLS as before.
- ``slack`` — when the connection ``greenlight_slack`` exists: an incoming-webhook POST of
  ``{"text": ...}`` (``urllib``, no extra dependency). The webhook URL is the connection's host
  (``https://hooks.slack.com/services``, with schema/port if set) + its password (the secret
  ``T…/B…/…`` path), or a full URL in the password.
- ``sentry`` — when ``sentry_sdk`` is importable and ``SENTRY_DSN`` is set: ``capture_message``.

``GREENLIGHT_NOTIFY_CHANNELS`` (comma list, e.g. ``log,slack``) restricts the channels.

**Severity routing** — ``GREENLIGHT_NOTIFY_ROUTES`` (or the notifier's ``routes`` argument) says
which triage classes each channel receives, ``channel=kind,kind;channel=kind``. ``*`` is every
class, ``-kind`` removes one, ``@retryable`` / ``@fatal`` are the classes a retry can / cannot fix.
A channel that is not listed receives everything. Example: page on what needs a human now, keep
blips in the log::

    GREENLIGHT_NOTIFY_ROUTES="slack=contract,permission,unrecoverable,missing_input;smtp=*,-transient"

A malformed value is logged and ignored (every channel then receives every alert): an alert is
never dropped because of a typo in its routing. The log
link's base URL is ``AIRFLOW__API__BASE_URL`` (Airflow's ``[api] base_url``), default
``http://localhost:8080``. Messages never carry connection passwords, extras or webhook URLs:
the error text goes through Airflow's secrets masker and the channel's own secrets are scrubbed.
"""

from __future__ import annotations

import html
import json
import logging
import os
import urllib.request
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook
from airflow.sdk.bases.notifier import BaseNotifier
from airflow.sdk.configuration import conf

log = logging.getLogger("greenlight.dagsupport.notify")

SMTP_CONN_ID = "greenlight_smtp"
SLACK_CONN_ID = "greenlight_slack"
CHANNELS_ENV = "GREENLIGHT_NOTIFY_CHANNELS"
ROUTES_ENV = "GREENLIGHT_NOTIFY_ROUTES"
ALL_CHANNELS = ("log", "smtp", "slack", "sentry")
DEFAULT_BASE_URL = "http://localhost:8080"


def api_base_url() -> str:
    """The Airflow UI/API base URL for links: env ``AIRFLOW__API__BASE_URL``, Airflow's
    ``[api] base_url``, else ``http://localhost:8080``."""
    value = os.environ.get("AIRFLOW__API__BASE_URL")
    if not value:
        try:
            value = conf.get("api", "base_url", fallback=None)
        except Exception:  # noqa: BLE001 - no Airflow config: use the default
            value = None
    return (value or DEFAULT_BASE_URL).rstrip("/")


def log_url(base_url: str, dag_id: str, run_id: str, task_id: str | None, map_index: int | None, try_number) -> str:
    """The Airflow 3 UI page of a task instance's log (the run page when there is no task)."""
    url = f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id or '', safe='')}"
    if task_id:
        url += f"/tasks/{quote(task_id, safe='')}"
        if map_index is not None and map_index >= 0:
            url += f"/mapped/{map_index}"
        if try_number:
            url += f"?try_number={try_number}"
    return url


def build_alert(context: dict[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """The facts of one failure, from an Airflow callback context (task- or DAG-level)."""
    # Local imports: every DAG file imports this module at parse time (default_args), an alert is
    # rare; redact + taskmanifest + triage cost 50-90 ms to import (measured with -X importtime).
    from greenlight.dagsupport.taskmanifest import contextual_triage
    from greenlight.redact import clean_message

    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None) or "?"
    run_id = getattr(ti, "run_id", None) or context.get("run_id") or getattr(dag_run, "run_id", None) or "?"
    task_id = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", None)
    try_number = getattr(ti, "try_number", None)
    error = context.get("exception")
    if error is None and context.get("reason"):
        error = str(context["reason"])
    triage = contextual_triage(error, ti if getattr(ti, "task", None) is not None else None)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index if map_index is not None and map_index >= 0 else None,
        "try_number": try_number,
        "max_tries": getattr(ti, "max_tries", None),
        "kind": triage.kind,
        "retryable": triage.retryable,
        "hint": triage.hint,
        "message": clean_message(error) or "(no error message)",
        "log_url": log_url(base_url or api_base_url(), dag_id, run_id, task_id, map_index, try_number),
    }


def format_subject(alert: dict[str, Any]) -> str:
    what = alert["dag_id"] + (f".{alert['task_id']}" if alert["task_id"] else "")
    if alert["map_index"] is not None:
        what += f"[{alert['map_index']}]"
    return f"[greenlight] {what} failed ({alert['kind']})"


def format_text(alert: dict[str, Any]) -> str:
    tries = ""
    if alert["try_number"]:
        tries = f", try {alert['try_number']}" + (f" of {alert['max_tries'] + 1}" if alert["max_tries"] else "")
    return "\n".join(
        [
            f"{format_subject(alert)} — run {alert['run_id']}{tries}",
            f"error class: {alert['kind']} — {alert['hint']}",
            f"error: {alert['message']}",
            f"log: {alert['log_url']}",
        ]
    )


def _channels() -> list[str]:
    value = os.environ.get(CHANNELS_ENV, "").strip()
    if not value:
        return list(ALL_CHANNELS)
    wanted = [c.strip().lower() for c in value.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(ALL_CHANNELS))
    if unknown:
        log.warning("%s: unknown channel(s) %s ignored", CHANNELS_ENV, unknown)
    return [c for c in ALL_CHANNELS if c in wanted]


def parse_routes(text: str | None) -> dict[str, list[str]]:
    """``"slack=contract,permission;smtp=*,-transient"`` -> ``{"slack": [...], "smtp": [...]}``.

    Raises ``ValueError`` naming the part at fault (unknown channel, empty list, bad syntax)."""
    routes: dict[str, list[str]] = {}
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        channel, sep, kinds = part.partition("=")
        channel = channel.strip().lower()
        if not sep or channel not in ALL_CHANNELS:
            raise ValueError(f"{part!r}: expected <channel>=<kind>,... with a channel in {list(ALL_CHANNELS)}")
        wanted = [k.strip() for k in kinds.split(",") if k.strip()]
        if not wanted:
            raise ValueError(f"{part!r}: no triage class listed for {channel}")
        routes[channel] = wanted
    return routes


def routed(kind: str, retryable: bool, wanted: list[str] | None) -> bool:
    """True when an alert of this triage class goes to a channel whose route is ``wanted``."""
    if wanted is None:
        return True
    selected = False
    for item in wanted:
        negate = item.startswith("-")
        name = item[1:] if negate else item
        match = (
            name == "*" or name == kind or (name == "@retryable" and retryable) or (name == "@fatal" and not retryable)
        )
        if match:
            selected = not negate
    return selected


def _routes(explicit: dict[str, list[str]] | str | None) -> dict[str, list[str]]:
    value = explicit if explicit is not None else os.environ.get(ROUTES_ENV)
    if isinstance(value, dict):
        return {k.lower(): list(v) for k, v in value.items()}
    try:
        return parse_routes(value)
    except ValueError as exc:
        log.warning("%s ignored, every channel gets every alert: %s", ROUTES_ENV, exc)
        return {}


def _connection(conn_id: str):
    """The Airflow connection, or None when it is not defined (that channel is then off)."""
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - the SDK raises its own not-found type; a missing conn = channel off
        return None


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _extra(conn) -> dict[str, Any]:
    try:
        return dict(conn.extra_dejson or {})
    except Exception:  # noqa: BLE001 - unparseable extra: use none of it
        return {}


def tls_flag(extra: dict[str, Any], ours: str, providers: str) -> bool:
    """greenlight's extra (``ssl``/``starttls``: on when true) wins, then the provider's
    (``disable_ssl``/``disable_tls``: on unless true); with neither, off (greenlight's default)."""
    if ours in extra:
        return bool(extra[ours])
    if providers in extra:
        return not bool(extra[providers])
    return False


def _smtp_notifier_class():
    """The provider's ``SmtpNotifier`` with a hook that reads greenlight's TLS extras as well.

    Imported on first use: the provider pulls in aiosmtplib, and this module is imported by every
    DAG file (through ``default_args``), where only the notifier object is built.
    """
    # local: the SMTP provider and aiosmtplib add ~15 ms to every DAG file's parse; only a sent mail needs them
    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    class GreenlightSmtpHook(SmtpHook):
        @property
        def use_ssl(self) -> bool:
            return tls_flag(_extra(self.conn), "ssl", "disable_ssl")

        @property
        def smtp_starttls(self) -> bool:
            return not self.use_ssl and tls_flag(_extra(self.conn), "starttls", "disable_tls")

    class GreenlightSmtpNotifier(SmtpNotifier):
        @cached_property
        def hook(self) -> SmtpHook:
            return GreenlightSmtpHook(smtp_conn_id=self.smtp_conn_id, auth_type=self.auth_type)

    return GreenlightSmtpNotifier


def send_smtp(conn, subject: str, text: str) -> list[str]:
    """Send one mail through the connection's server with the SMTP provider's notifier; returns the
    recipients. The body is the alert text, HTML-escaped, in a ``<pre>`` block."""
    extra = _extra(conn)
    recipients = extra.get("to") or []
    if isinstance(recipients, str):
        recipients = [r.strip() for r in recipients.replace(";", ",").split(",") if r.strip()]
    if not recipients:
        raise ValueError(f"connection {conn.conn_id!r} has no recipients (extra 'to')")
    sender = (
        extra.get("from")
        or extra.get("from_email")
        or (conn.login if conn.login and "@" in conn.login else "greenlight@localhost")
    )
    notifier = _smtp_notifier_class()(
        to=recipients,
        from_email=sender,
        subject=subject,
        html_content=f"<pre>{html.escape(_scrub(text, conn.password))}\n</pre>",
        smtp_conn_id=conn.conn_id,
    )
    # notify(), not __call__: every field is given, so nothing is rendered as a Jinja template (an
    # error message containing "{{ ... }}" is sent as written, never evaluated).
    notifier.notify({})
    return recipients


def slack_webhook_url(conn) -> str:
    """The webhook URL from a ``greenlight_slack`` connection (see the module docs)."""
    password = conn.password or ""
    if password.startswith(("http://", "https://")):
        return password
    host = (conn.host or "").rstrip("/")
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host (the webhook base URL)")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port:
        scheme, _, rest = host.partition("://")
        hostname, slash, path = rest.partition("/")
        host = f"{scheme}://{hostname}:{conn.port}{slash}{path}"
    return host + ("/" + password.lstrip("/") if password else "")


def send_slack(conn, text: str) -> int:
    """POST ``{"text": ...}`` to the webhook; returns the HTTP status (raises on non-2xx)."""
    url = slack_webhook_url(conn)
    body = json.dumps({"text": _scrub(text, conn.password, url)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    timeout = float(_extra(conn).get("timeout", 10))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except Exception as exc:  # noqa: BLE001 - re-raised below, scrubbed
        # urllib puts the full URL (with the webhook secret) into some errors: never re-raise it.
        raise RuntimeError(_scrub(f"slack webhook failed: {type(exc).__name__}: {exc}", conn.password, url)) from None


def send_sentry(alert: dict[str, Any], text: str) -> bool:
    """Capture one message in Sentry when ``sentry_sdk`` is installed and ``SENTRY_DSN`` is set."""
    dsn = os.environ.get("SENTRY_DSN")
    if not dsn:
        return False
    try:
        import sentry_sdk  # local: optional dependency (not in requirements.txt); Sentry is off without it
    except ImportError:
        return False
    if not sentry_sdk.is_initialized():
        sentry_sdk.init(dsn=dsn)
    with sentry_sdk.new_scope() as scope:
        for tag in ("dag_id", "task_id", "run_id", "kind"):
            if alert.get(tag) is not None:
                scope.set_tag(f"greenlight.{tag}", str(alert[tag]))
        sentry_sdk.capture_message(text, level="error")
    return True


class GreenlightFailureNotifier(BaseNotifier):
    """Send one failure alert (DAG, task, run, error class, hint, log link) to every configured
    channel. See the module docstring for the channels and their configuration."""

    template_fields = ()

    def __init__(
        self,
        *,
        smtp_conn_id: str = SMTP_CONN_ID,
        slack_conn_id: str = SLACK_CONN_ID,
        base_url: str | None = None,
        routes: dict[str, list[str]] | str | None = None,
    ):
        super().__init__()
        #: Per-channel triage classes (see the module docs); None = ``$GREENLIGHT_NOTIFY_ROUTES``.
        self.routes = routes
        self.smtp_conn_id = smtp_conn_id
        self.slack_conn_id = slack_conn_id
        self.base_url = base_url
        #: What the last call sent, per channel (for the log line and for tests).
        self.last_sent: dict[str, Any] = {}

    def notify(self, context) -> None:
        alert = build_alert(dict(context), self.base_url)
        subject, text = format_subject(alert), format_text(alert)
        sent: dict[str, Any] = {}
        routes = _routes(self.routes)
        channels = [c for c in _channels() if routed(alert["kind"], alert["retryable"], routes.get(c))]
        skipped = [c for c in _channels() if c not in channels]
        if skipped:
            log.info("greenlight alert (%s) not routed to %s", alert["kind"], ", ".join(skipped))
        if "log" in channels:
            log.error("%s", text)
            sent["log"] = True
        for channel in ("smtp", "slack"):
            if channel not in channels:
                continue
            conn_id = self.smtp_conn_id if channel == "smtp" else self.slack_conn_id
            conn = _connection(conn_id)
            if conn is None:
                continue
            try:
                sent[channel] = send_smtp(conn, subject, text) if channel == "smtp" else send_slack(conn, text)
            except Exception as exc:  # noqa: BLE001 - one broken channel must not silence the others
                log.warning(
                    "greenlight alert not sent via %s (%s): %s", channel, conn_id, _scrub(str(exc), conn.password)
                )
        if "sentry" in channels:
            try:
                if send_sentry(alert, text):
                    sent["sentry"] = True
            except Exception as exc:  # noqa: BLE001
                log.warning("greenlight alert not sent via sentry: %s", type(exc).__name__)
        self.last_sent = sent
        log.info("greenlight alert sent via %s", ", ".join(sorted(sent)) or "no channel")


def default_notifier() -> GreenlightFailureNotifier:
    """The notifier every greenlight DAG uses as ``on_failure_callback`` in its ``default_args``."""
    return GreenlightFailureNotifier()

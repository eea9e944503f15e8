"""Secrets never leave: redaction for everything greenlight records (no Airflow imports needed).

Used where text or data leaves the process: manifests and reports (:class:`ManifestStore` writes
through :func:`redact_text`), the CLI's JSON summary and its log handler, XCom return values,
task manifests, failure alerts and error messages. What is redacted:

- credentials in URLs: ``https://user:PASSWORD@host`` → ``https://user:***@host``; a bare token
  as the user part (``https://ghp_…@github.com``, 20+ characters) → ``https://***@host``;
- secret query parameters (``?token=``, ``password=``, ``X-Amz-Signature=``, ``sig=`` …);
- the values of sensitive environment variables (``*SECRET*``, ``*PASSWORD*``, ``*TOKEN*``,
  ``*_KEY``, ``AIRFLOW_CONN_*``) wherever they appear;
- values under sensitive key names in mappings (``password``, ``secret_access_key``, ``token`` …)
  and the argument after such a name on a command line (``dvc remote modify r secret_access_key V``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

REDACTED = "***"
MAX_MESSAGE = 4000

#: Key names whose values are never written (compared case-insensitively, ``-`` = ``_``). A bare
#: ``key`` (or ``s3_key``, ``object_key``) is *not* sensitive: in this project it names S3 object
#: keys, the very data manifests exist for; ``access_key``, ``api_key``, ``private_key``... are.
_SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)|secret|token|credential|authori[sz]ation|bearer|cookie|dsn|connection_string"
    r"|webhook|keyfile|(access|private|api|service|signing|encryption|sse|customer|master|client|account"
    r"|auth|ssh|pgp|gpg|license|app|consumer|subscription|storage|shared|sas)_?keys?(_id)?$",
    re.IGNORECASE,
)
_SENSITIVE_ENV = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|_KEY$|^AIRFLOW_CONN_", re.IGNORECASE)
# scheme://[user][:password]@  (the userinfo part has no '/', whitespace, quotes or another '@')
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@'\"<>\\]*)(?::(?P<pw>[^/\s@'\"<>\\]*))?@"
)
_QUERY = re.compile(
    r"(?P<name>[?&;](?:access_token|token|password|passwd|pwd|secret|client_secret|api_key|apikey|sig|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|sas|auth)=)[^&;\s\"'#]+",
    re.IGNORECASE,
)


def sensitive_key(name: Any) -> bool:
    return isinstance(name, str) and bool(_SENSITIVE_KEY.search(name.replace("-", "_")))


def env_secrets() -> list[str]:
    """Values of sensitive environment variables (8+ characters), longest first."""
    return sorted(
        (v for k, v in os.environ.items() if _SENSITIVE_ENV.search(k) and v and len(v) >= 8),
        key=len,
        reverse=True,
    )


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _userinfo(match: re.Match) -> str:
    scheme, user, password = match["scheme"], match["user"], match["pw"]
    if password is not None:
        return f"{scheme}{user}:{REDACTED}@" if password else match[0]
    if len(user) >= 20:  # a bare token as the user (https://<token>@github.com/...)
        return f"{scheme}{REDACTED}@"
    return match[0]


def redact_urls(text: str) -> str:
    """Credentials in every URL of ``text`` replaced by ``***`` (user names kept)."""
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _QUERY.sub(lambda m: m["name"] + REDACTED, text)
    return text


def redact_text(text: str, *, json_escaped: bool = False) -> str:
    """URL credentials and sensitive environment values removed from ``text``.

    ``json_escaped``: ``text`` is JSON, so environment values are looked for in their escaped form."""
    text = redact_urls(text)
    secrets = env_secrets()
    if json_escaped:
        secrets = [json.dumps(s)[1:-1] for s in secrets]
    return scrub(text, secrets)


def redact(value: Any) -> Any:
    """A copy of plain data (dicts, lists, strings) with every secret redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if sensitive_key(k) and v not in (None, "") and not isinstance(v, bool) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def redact_argv(argv: list[str]) -> str:
    """A command line for messages: the argument after a sensitive name and URL credentials hidden."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _ = arg.lstrip("-").partition("=")
        if eq and sensitive_key(name):
            out.append(arg.split("=", 1)[0] + "=" + REDACTED)
            continue
        hide_next = sensitive_key(name)
        out.append(redact_text(arg))
    return " ".join(out)


def airflow_redact(value: Any) -> Any:
    """Airflow's secrets masker when running under Airflow (connection passwords, extras, masked
    Variables); outside Airflow there is nothing registered to mask."""
    try:
        from airflow.sdk.log import redact as airflow_mask  # optional: greenlight also runs without Airflow
    except Exception:  # noqa: BLE001 - not under Airflow
        return value
    try:
        return airflow_mask(value)
    except Exception:  # noqa: BLE001 - never let masking break the caller; ours still applies
        return value


def clean_message(error: Any) -> str | None:
    """An error (or message) as it may be recorded: bounded, masked, credentials redacted."""
    if error is None:
        return None
    text = str(error) if not isinstance(error, BaseException) else f"{type(error).__name__}: {error}"
    text = text[:MAX_MESSAGE]
    masked = airflow_redact(text)
    return redact_text(masked if isinstance(masked, str) else text)


def scrub_exception(exc: BaseException) -> bool:
    """Redact credentials in the messages of ``exc`` and of every exception it was raised from
    (``__cause__``/``__context__``), in place, so a traceback logged later shows no secret.

    Returns False when a message could not be rewritten (an exception whose text does not come from
    its ``args``): the caller must then not let that exception reach a log."""
    clean = True
    seen: set[int] = set()
    current: BaseException | None = exc
    pending: list[BaseException] = []
    while current is not None or pending:
        if current is None:
            current = pending.pop()
        if id(current) in seen:
            current = None
            continue
        seen.add(id(current))
        try:
            text = str(current)
        except Exception:  # noqa: BLE001 - an exception whose __str__ fails shows no text either
            text = ""
        redacted = redact_text(text)
        if redacted != text:
            try:
                current.args = (redacted,)
                clean = clean and str(current) == redacted
            except Exception:  # noqa: BLE001 - read-only args: reported to the caller
                clean = False
        if current.__context__ is not None and current.__context__ is not current.__cause__:
            pending.append(current.__context__)
        current = current.__cause__
    return clean


def mask_for_airflow(*values: str | None) -> None:
    """Register the secrets inside these URLs/values with Airflow's masker, so task logs hide them
    too (a no-op outside Airflow)."""
    try:
        # local: airflow.sdk costs ~2 s to import and this module is used without Airflow (CLI, library)
        from airflow.sdk.log import mask_secret
    except Exception:  # noqa: BLE001 - not under Airflow
        return
    for value in values:
        if not value or "@" not in value:
            continue
        try:
            parts = urlsplit(value)
        except ValueError:
            continue
        if parts.password:
            mask_secret(parts.password)
        elif parts.username and len(parts.username) >= 20:
            mask_secret(parts.username)


class RedactingFilter:
    """A ``logging`` filter that redacts each record's final message (for handlers greenlight owns)."""

    def filter(self, record) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = redact_text(str(record.exc_info[1]))
            if text != str(record.exc_info[1]):
                record.exc_text = None
                try:
                    record.exc_info[1].args = (text,)
                except Exception:  # noqa: BLE001 - immutable args: leave it
                    pass
        return True

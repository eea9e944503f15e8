"""After the tables and buckets are copied: staging's migrations (a command run with the staging
connection in its environment, or an HTTP call through the http provider's ``HttpHook``) and its
health checks (an HTTP deep-health URL and/or SQL checks), with the schema version recorded before
and after. Steps of :mod:`greenlight.refresh.run`'s sequence (runbook 001, steps 4 and 5).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from typing import TYPE_CHECKING, Any

from greenlight.errors import ConfigError, RefreshError
from greenlight.refresh import catalog as pgcat
from greenlight.refresh.connections import PgConn

if TYPE_CHECKING:
    from greenlight.refresh.run import Refresh

log = logging.getLogger("greenlight.refresh.checks")


class RefreshFailedError(RefreshError):
    """A step of the refresh failed (the migration, a health check, the summary): exit 1."""

    @property
    def step(self) -> str:
        return self.where


# ---------------------------------------------------------------------------------------- migrate
def migrate(r: Refresh) -> dict[str, Any]:
    """Runbook: "run migrations on staging via API". A command with the staging connection in its
    environment, or an HTTP call; records the staging schema version before and after."""
    m = r.config.migrations
    if m is None or r.dry_run or r.skip_migrations:
        why = "not configured" if m is None else ("dry run" if r.dry_run else "skip_migrations")
        log.info("migrations not run: %s", why)
        return {"ran": False, "reason": why}
    section = r.config.postgres
    target = r.resolve(section.target_conn) if section else None
    before = _staging_version(r, target)
    started = time.monotonic()
    if m.command is not None:
        argv = shlex.split(m.command) if isinstance(m.command, str) else list(m.command)
        env = {**os.environ, **(target.env() if target else {})}
        try:
            proc = subprocess.run(
                argv, cwd=m.cwd, env=env, capture_output=True, text=True, timeout=m.timeout_s, check=False
            )
        except FileNotFoundError as exc:
            raise RefreshFailedError("migrate", f"command {argv[0]!r} not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise RefreshFailedError("migrate", f"{argv[0]} did not finish in {m.timeout_s:g}s") from exc
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        for line in tail:
            log.info("migrate| %s", line)
        if proc.returncode != 0:
            raise RefreshFailedError(
                "migrate", f"{' '.join(argv[:3])} exited {proc.returncode}: {' / '.join(tail[-3:])}"
            )
        how = {"command": argv[:3], "returncode": proc.returncode}
    else:
        url, status, body = _http_migration(m.http)
        if status not in m.http.expect_status:
            raise RefreshFailedError("migrate", f"{m.http.method} {url} answered {status}: {body[:200]}")
        how = {"http": url, "conn_id": m.http.conn_id, "status": status}
    after = _staging_version(r, target)
    log.info("migrations applied in %.1fs: staging %s -> %s", time.monotonic() - started, before, after)
    return {"ran": True, **how, "version_before": before, "version_after": after}


def _http_migration(h) -> tuple[str, int, str]:
    """Call the migrate endpoint through the http provider's ``HttpHook`` (connection ``h.conn_id``:
    base URL, auth and headers from the connection, in a task and in the CLI alike)."""
    # local: the http provider imports Airflow (~2 s); only an HTTP migration needs it
    import requests
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method=h.method, http_conn_id=h.conn_id)
    try:
        url = hook.url_from_endpoint(h.endpoint)
    except Exception as exc:  # noqa: BLE001 - the SDK raises its own not-found type
        raise ConfigError(f"migrations.http.conn_id: connection {h.conn_id!r} cannot be resolved: {exc}") from exc
    try:
        response = hook.run(h.endpoint, extra_options={"check_response": False, "timeout": h.timeout_s})
    except requests.RequestException as exc:
        raise RefreshFailedError("migrate", f"{h.method} {url}: {type(exc).__name__}: {exc}") from exc
    return url, response.status_code, response.text


def _staging_version(r: Refresh, target: PgConn | None) -> str | None:
    if target is None:
        return None
    with pgcat.connect(target.conninfo) as conn:
        return pgcat.alembic_version(conn, r.config.postgres.schemas)


def _http(url: str, method: str, timeout: float) -> tuple[int, bytes]:
    # local: urllib.request pulls in http.client and email (~30 ms of every CLI start); only a
    # configured health URL needs it
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL from the config
            return resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(65536)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise RefreshFailedError("http", f"{method} {url}: {exc}") from exc


# ---------------------------------------------------------------------------------------- health
def health(r: Refresh) -> dict[str, Any]:
    """Runbook: "verify staging health" (the deep health URL) plus SQL checks on staging."""
    h = r.config.health
    if h is None or r.dry_run:
        return {"checked": False}
    out: dict[str, Any] = {"checked": True, "sql": []}
    problems = []
    if h.url:
        status, body = _http(h.url, "GET", h.timeout_s)
        out["url"] = {"url": h.url, "status": status}
        if status != h.expect_status:
            problems.append(f"GET {h.url} answered {status}: {body[:200].decode(errors='replace')}")
    if h.sql:
        target = r.resolve(r.config.postgres.target_conn)
        with pgcat.connect(target.conninfo) as conn:
            for check in h.sql:
                try:
                    value = conn.execute(check.sql).fetchone()
                    value = value[0] if value else None
                    ok = (value is not None and float(value) >= check.min) if check.min is not None else value is True
                except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, named
                    conn.rollback()
                    value, ok = f"{type(exc).__name__}: {exc}".strip(), False
                out["sql"].append({"name": check.name, "ok": ok, "value": value})
                if not ok:
                    problems.append(f"SQL check {check.name!r} returned {value!r}")
            conn.rollback()
    for p in problems:
        log.error("health: %s", p)
    if problems:
        raise RefreshFailedError("health", "; ".join(problems))
    log.info("health: staging healthy (%s)", ", ".join([c["name"] for c in out["sql"]] + ([h.url] if h.url else [])))
    return out

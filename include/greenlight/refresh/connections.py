"""PostgreSQL connection ids → libpq connection strings, the same way in a task and in the CLI.

In a task the postgres provider's ``PostgresHook(postgres_conn_id=…)`` resolves the id (any
secrets backend); the CLI reads the standard ``AIRFLOW_CONN_<ID>`` env var (URI or JSON form),
without importing Airflow. Either way the fields become a libpq conninfo (host, port, dbname =
the connection's *schema*, user, password, and libpq extras such as ``sslmode``). The conninfo
holds the password: it is passed to psycopg only, never logged or written to a manifest —
:func:`describe` gives the loggable form.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from greenlight.errors import ConfigError
from greenlight.storage.s3 import make_client

#: libpq keywords taken from a connection's extra (others, e.g. the hook's own options, are ignored).
LIBPQ_EXTRAS = {
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "target_session_attrs",
    "options",
    "application_name",
    "keepalives",
    "keepalives_idle",
    "gssencmode",
}


@dataclass(frozen=True)
class PgConn:
    conn_id: str
    host: str | None
    port: int | None
    database: str | None
    user: str | None
    password: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conninfo(self) -> str:
        # local: psycopg (~0.1-0.2 s to import) stays off DAG parse and `--help`
        from psycopg.conninfo import make_conninfo

        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
            "password": self.password,
        }
        params.update({k: v for k, v in self.extra.items() if k in LIBPQ_EXTRAS})
        return make_conninfo("", **{k: v for k, v in params.items() if v not in (None, "")})

    def describe(self) -> str:
        """host:port/database of the connection, without credentials."""
        return f"{self.conn_id} ({self.host or 'localhost'}:{self.port or 5432}/{self.database or ''})"

    def env(self) -> dict[str, str]:
        """libpq env vars + ``DATABASE_URL`` for a migration command run against this database."""
        out = {
            "PGHOST": self.host or "",
            "PGPORT": str(self.port or 5432),
            "PGDATABASE": self.database or "",
            "PGUSER": self.user or "",
        }
        if self.password:
            out["PGPASSWORD"] = self.password
        auth = quote(self.user or "", safe="") + (":" + quote(self.password, safe="") if self.password else "")
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in self.extra.items() if k in LIBPQ_EXTRAS)
        out["DATABASE_URL"] = (
            f"postgresql://{auth}{'@' if auth else ''}{self.host or 'localhost'}:{self.port or 5432}/"
            f"{self.database or ''}" + (f"?{query}" if query else "")
        )
        return {k: v for k, v in out.items() if v != ""}


def _from_fields(conn_id: str, host, port, schema, login, password, extra) -> PgConn:
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except ValueError as exc:
            raise ConfigError(f"connection {conn_id!r}: extra is not valid JSON") from exc
    return PgConn(
        conn_id=conn_id,
        host=host or None,
        port=int(port) if port else None,
        database=schema or None,
        user=login or None,
        password=password or None,
        extra=dict(extra or {}),
    )


def from_env(conn_id: str, environ: dict[str, str] | None = None) -> PgConn:
    """Resolve ``AIRFLOW_CONN_<ID>`` (``postgres://user:pw@host:port/db?sslmode=…`` or JSON)."""
    environ = os.environ if environ is None else environ
    var = "AIRFLOW_CONN_" + conn_id.upper()
    value = environ.get(var)
    if not value:
        raise ConfigError(f"connection {conn_id!r} is not defined: set {var} (a postgres:// URI or JSON)")
    value = value.strip()
    if value.startswith("{"):
        try:
            doc = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{var}: not valid JSON") from exc
        return _from_fields(
            conn_id,
            doc.get("host"),
            doc.get("port"),
            doc.get("schema"),
            doc.get("login"),
            doc.get("password"),
            doc.get("extra"),
        )
    parts = urlsplit(value)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"{var}: expected a postgres:// or postgresql:// URI, got scheme {parts.scheme!r}")
    extra = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra["__extra__"])
    return _from_fields(
        conn_id,
        unquote(parts.hostname or ""),
        parts.port,
        unquote(parts.path.lstrip("/")),
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        extra,
    )


def require_env_conn(conn_id: str, environ: dict[str, str] | None = None) -> None:
    """The CLI resolves every connection id from ``AIRFLOW_CONN_<ID>``: refuse early when it is unset."""
    environ = os.environ if environ is None else environ
    var = "AIRFLOW_CONN_" + conn_id.upper()
    if not (environ.get(var) or "").strip():
        raise ConfigError(f"connection {conn_id!r} is not defined: set {var} (e.g. http://host:port or JSON)")


def from_airflow(conn_id: str) -> PgConn:
    """Resolve through the postgres provider's ``PostgresHook`` (task context; any secrets backend)."""
    # local: the postgres provider imports Airflow (~2 s); the CLI resolves connections without it
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        conn = PostgresHook(postgres_conn_id=conn_id).connection
    except Exception as exc:  # noqa: BLE001 - the SDK raises its own not-found type
        raise ConfigError(f"Airflow connection {conn_id!r} is not defined or cannot be read: {exc}") from exc
    return _from_fields(conn_id, conn.host, conn.port, conn.schema, conn.login, conn.password, conn.extra_dejson)


def aws_client_from_env(conn_id: str, environ: dict[str, str] | None = None, *, max_pool: int = 64):
    """An S3 client for the AWS connection ``AIRFLOW_CONN_<ID>`` (JSON: login = access key, password =
    secret key, extra ``endpoint_url`` / ``region_name``), for the CLI's ``source_aws_conn``."""
    environ = os.environ if environ is None else environ
    var = "AIRFLOW_CONN_" + conn_id.upper()
    value = (environ.get(var) or "").strip()
    if not value:
        raise ConfigError(f"connection {conn_id!r} is not defined: set {var} (JSON with login, password, extra)")
    if value.startswith("{"):
        try:
            doc = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{var}: not valid JSON") from exc
        extra = doc.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
        login, password = doc.get("login"), doc.get("password")
    else:
        parts = urlsplit(value)
        extra = dict(parse_qsl(parts.query))
        login, password = unquote(parts.username or ""), unquote(parts.password or "")
    return make_client(
        endpoint_url=extra.get("endpoint_url"),
        access_key=login or None,
        secret_key=password or None,
        region=extra.get("region_name"),
        max_pool=max_pool,
    )

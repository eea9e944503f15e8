"""The ``make demo`` step for the staging refresh (runbook 001), on embedded servers.

Two embedded PostgreSQL servers play prod and staging: staging is one alembic migration ahead
(``admin_config.value`` is ``jsonb`` where prod has ``numeric``, ``eval_runbooks.condition_positives``
``jsonb`` where prod has ``text[]``, a new ``eval_runbook_jobs`` table) and has one more migration
pending. An image bucket pair lives on the demo S3. ``python -m greenlight refresh`` then copies
the bucket and every table (casting on the prod side), applies the pending migration, runs the
health checks and verifies; the demo prints the per-table result table.

The lead's demo calls :func:`run_refresh_demo`; it is safe to run again and again (the databases
are recreated, the buckets converge).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenlight.dev.featurestack import start_postgres
from greenlight.refresh.run import table_lines

PROD_IMAGES = "images-greenlight-demo"
STAGING_IMAGES = "images-greenlight-demo-staging"
DATABASE = "bluemoxon"

PROD_SQL = [
    "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('a1_base')",
    "CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE books (id serial PRIMARY KEY, author_id integer NOT NULL REFERENCES authors(id), title text NOT NULL)",
    "CREATE TABLE book_images (id serial PRIMARY KEY, book_id integer NOT NULL REFERENCES books(id), s3_key text)",
    "CREATE TABLE admin_config (key text PRIMARY KEY, value numeric)",
    "CREATE TABLE eval_runbooks (id serial PRIMARY KEY, book_id integer, condition_positives text[])",
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)",
    "INSERT INTO authors (name) SELECT 'Author ' || g FROM generate_series(1, 12) g",
    "INSERT INTO books (author_id, title) SELECT 1 + g % 12, 'Book ' || g FROM generate_series(1, 153) g",
    "INSERT INTO book_images (book_id, s3_key) SELECT 1 + g % 153, 'images/book-' || g || '.jpg' "
    "FROM generate_series(1, 40) g",
    "INSERT INTO admin_config VALUES ('fmv_weight', 0.35), ('max_jobs', 4)",
    "INSERT INTO eval_runbooks (book_id, condition_positives) VALUES (533, ARRAY['clean', 'bright gilt']), "
    "(181, ARRAY['tight'])",
    "INSERT INTO users (email) SELECT 'collector' || g || '@example.com' FROM generate_series(1, 8) g",
]
# Staging after migration b2 (one ahead of prod), with stale rows from an old refresh.
STAGING_SQL = [
    "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('b2_jsonb_config')",
    "CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE books (id serial PRIMARY KEY, author_id integer NOT NULL REFERENCES authors(id), title text NOT NULL)",
    "CREATE TABLE book_images (id serial PRIMARY KEY, book_id integer NOT NULL REFERENCES books(id), s3_key text)",
    "CREATE TABLE admin_config (key text PRIMARY KEY, value jsonb)",
    "CREATE TABLE eval_runbooks (id serial PRIMARY KEY, book_id integer, condition_positives jsonb)",
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)",
    "CREATE TABLE eval_runbook_jobs (id serial PRIMARY KEY, status text)",
    "INSERT INTO authors (name) VALUES ('stale author')",
    "INSERT INTO books (author_id, title) VALUES (1, 'stale book')",
]
MIGRATIONS = {
    "a1_base": (None, "pass"),
    "b2_jsonb_config": ("a1_base", "pass  # applied on staging: admin_config.value and condition_positives -> jsonb"),
    "c3_author_tier": (
        "b2_jsonb_config",
        "op.execute(\"ALTER TABLE authors ADD COLUMN tier text DEFAULT 'standard'\")",
    ),
}
ENV_PY = """
import os
from alembic import context
from sqlalchemy import create_engine

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
with create_engine(url).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


def _alembic(root: Path) -> tuple[Path, Path]:
    scripts = root / "alembic"
    (scripts / "versions").mkdir(parents=True, exist_ok=True)
    (scripts / "env.py").write_text(textwrap.dedent(ENV_PY))
    for rev, (down, body) in MIGRATIONS.items():
        (scripts / "versions" / f"{rev}.py").write_text(
            f"from alembic import op  # noqa: F401\nrevision = {rev!r}\ndown_revision = {down!r}\n"
            f"branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    {body}\n\n\ndef downgrade():\n    pass\n"
        )
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {scripts}\n")
    return ini, scripts


def _recreate(admin_uri: str, statements: list[str]) -> str:
    import psycopg  # local: psycopg costs ~0.2-0.4 s to import; only the demo's database setup needs it

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    base, _, query = admin_uri.partition("?")
    uri = base.rsplit("/", 1)[0] + f"/{DATABASE}" + (f"?{query}" if query else "")
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)
    return uri


def _images(client) -> int:
    for bucket in (PROD_IMAGES, STAGING_IMAGES):
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
    for i in range(1, 41):
        body = hashlib.sha256(f"book-{i}".encode()).digest() * (64 + i)  # deterministic "JPEG" bytes
        client.put_object(Bucket=PROD_IMAGES, Key=f"images/book-{i}.jpg", Body=body)
    client.put_object(Bucket=STAGING_IMAGES, Key="images/book-1.jpg", Body=b"stale staging copy")
    return 40


def prepare(root: Path, client) -> dict[str, Any]:
    """Prod + staging PostgreSQL (started here: the caller stops ``servers`` by PID), the image
    bucket pair, the alembic scripts and the refresh config under ``root``; returns them with the
    two Airflow connections (``AIRFLOW_CONN_BLUEMOXON_DB`` / ``..._STAGING_DB``) the config names."""
    root.mkdir(parents=True, exist_ok=True)
    servers = []
    try:
        servers.append(start_postgres(root / "pg-prod", database="postgres"))
        servers.append(start_postgres(root / "pg-staging", database="postgres"))
        prod_uri = _recreate(servers[0].uri, PROD_SQL)
        staging_uri = _recreate(servers[1].uri, STAGING_SQL)
        images = _images(client)
        ini, scripts = _alembic(root)
        config = root / "staging_refresh.yaml"
        config.write_text(
            json.dumps(
                {
                    "buckets": [
                        {
                            "name": "images",
                            "source": f"s3://{PROD_IMAGES}/images/",
                            "target": f"s3://{STAGING_IMAGES}/images/",
                        }
                    ],
                    "postgres": {
                        "source_conn": "bluemoxon_db",
                        "target_conn": "bluemoxon_staging_db",
                        "mask": {"users.email": "email"},
                    },
                    "migrations": {
                        "command": [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
                        "alembic_script_location": str(scripts),
                    },
                    "health": {"sql": [{"name": "books present", "sql": "SELECT count(*) FROM books", "min": 1}]},
                    "manifest_uri": str(root / "manifests"),
                },
                indent=2,
            )
        )
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return {
        "servers": servers,
        "config": config,
        "images": images,
        "connections": {
            "AIRFLOW_CONN_BLUEMOXON_DB": prod_uri.replace("postgresql://", "postgres://", 1),
            "AIRFLOW_CONN_BLUEMOXON_STAGING_DB": staging_uri.replace("postgresql://", "postgres://", 1),
        },
    }


def run_refresh_demo(
    workdir: str | os.PathLike, s3_env: dict[str, str], client, *, say: Callable[[str], None] = print
) -> tuple[int, dict[str, Any]]:
    """Prod + staging PostgreSQL, an image bucket pair, then ``python -m greenlight refresh``.

    ``s3_env``: the AWS env vars of the demo S3 server; ``client``: an S3 client for it. Returns
    the CLI's exit code and its JSON summary. Every server started here is stopped here (by PID).
    """
    root = Path(workdir) / "refresh"
    prepared = prepare(root, client)
    servers, config = prepared["servers"], prepared["config"]
    try:
        say(
            f"   prod: PostgreSQL on :{servers[0].port} (alembic a1_base, admin_config.value numeric); "
            f"staging: :{servers[1].port} (b2_jsonb_config, one migration ahead, c3 pending); "
            f"s3://{PROD_IMAGES}/images/ ({prepared['images']} objects) -> s3://{STAGING_IMAGES}/images/"
        )
        env = {**os.environ, **s3_env, **prepared["connections"]}
        proc = subprocess.run(
            [sys.executable, "-m", "greenlight", "refresh", "--config", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        (root / "refresh.log").write_text(proc.stderr)
        lines = proc.stdout.strip().splitlines()
        summary = json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}
        say(f"   python -m greenlight refresh: exit {proc.returncode} (log: {root / 'refresh.log'})")
        if "tables" not in summary:
            say(f"   {summary.get('error')}")
            return proc.returncode or 1, summary
        for line in table_lines(summary["tables"]):
            say(f"   {line}")
        bucket = (summary.get("buckets") or [{}])[0]
        say(
            f"   images: {summary['objects_copied']} objects copied ({summary['bytes_copied']} B), "
            f"{bucket.get('objects_deleted', 0)} deleted, verified equal: {not summary['problems']}"
        )
        versions, migration, health = summary["versions"], summary["migrations"], summary["health"]
        say(f"   schema versions: prod {versions['prod']}, staging {versions['staging']} ({versions['relation']})")
        say(f"   migration: {migration.get('version_before')} -> {migration.get('version_after')}")
        checks = ", ".join(f"{c['name']} ok={c['ok']}" for c in health.get("sql", []))
        say(f"   health: {checks}")
        say(f"   rows synced: {summary['rows_synced']}; manifest: {summary['manifest']}")
        return proc.returncode, summary
    finally:
        for server in servers:
            server.stop()

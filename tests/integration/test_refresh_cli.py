"""``python -m greenlight refresh`` end to end: real PostgreSQL pair, real SeaweedFS, a real alembic
migration, an HTTP health endpoint (a local http.server), the manifest on S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import refreshfixtures
from helpers import put, rel_listing, write_config
from refreshfixtures import seed_runbook_schema

from greenlight.errors import RefusedError

pg_pair = refreshfixtures.pg_pair  # the session's two PostgreSQL servers
refresh_dbs = refreshfixtures.refresh_dbs  # a fresh database on each

STAGING_BUCKET = "greenlight-refresh-staging"


@pytest.fixture(scope="module")
def staging_bucket(s3):
    try:
        s3.create_bucket(Bucket=STAGING_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return STAGING_BUCKET


@pytest.fixture
def health_server():
    """A staging API's deep health endpoint: 200 while ``state['healthy']``, else 503."""
    state = {"healthy": True, "calls": 0, "posts": 0, "migrate_status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state["calls"] += 1
            self.send_response(200 if state["healthy"] else 503)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def do_POST(self):  # noqa: N802 - the app's migrate endpoint
            state["posts"] += 1
            state["last_post"] = {"path": self.path, "headers": dict(self.headers)}
            self.send_response(state["migrate_status"])
            self.end_headers()
            self.wfile.write(b"migrations failed: c3" if state["migrate_status"] >= 400 else b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/health/deep", state
    finally:
        server.shutdown()
        server.server_close()


def alembic_project(root) -> tuple[str, str]:
    """An alembic project: a1 (prod's version) -> b2 (staging is here) -> c3 (pending on staging)."""
    scripts = root / "alembic"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(
        textwrap.dedent(
            """
            import os
            from alembic import context
            from sqlalchemy import create_engine

            url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
            with create_engine(url).connect() as connection:
                context.configure(connection=connection)
                with context.begin_transaction():
                    context.run_migrations()
            """
        )
    )
    revisions = {
        "a1": (None, "pass"),
        "b2": ("a1", "op.execute('SELECT 1')"),
        "c3": ("b2", "op.execute(\"INSERT INTO admin_config VALUES ('migrated_c3', 'true')\")"),
    }
    for rev, (down, body) in revisions.items():
        (scripts / "versions" / f"{rev}.py").write_text(
            f"from alembic import op\nrevision = {rev!r}\ndown_revision = {down!r}\n"
            f"branch_labels = None\ndepends_on = None\n\ndef upgrade():\n    {body}\n\ndef downgrade():\n    pass\n"
        )
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {scripts}\n")
    return str(ini), str(scripts)


def run_main(capsys, config_path, *args):
    """The CLI in this process (same entry point, faster than a new interpreter)."""
    from greenlight.cli import main

    code = main(["refresh", "--config", str(config_path), *args])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def run_cli(config_path, *args):
    """The real ``python -m greenlight refresh`` in a new interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "greenlight", "refresh", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=180,
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_cli_refreshes_buckets_and_tables_migrates_checks_health(
    tmp_path, capsys, s3, buckets, area, staging_bucket, refresh_dbs, health_server
):
    dbs = refresh_dbs
    _, prod_bucket = buckets
    seed_runbook_schema(dbs)
    version_table = "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"
    dbs.run("prod", version_table, "INSERT INTO alembic_version VALUES ('a1')")
    dbs.run("staging", version_table, "INSERT INTO alembic_version VALUES ('b2')")
    ini, scripts = alembic_project(tmp_path)
    for i in range(6):
        put(s3, prod_bucket, f"{area}images/book-{i}.jpg", os.urandom(2048 + i))
    put(s3, staging_bucket, f"{area}images/book-0.jpg", b"stale staging copy")
    put(s3, staging_bucket, f"{area}images/gone-from-prod.jpg", b"x")
    url, state = health_server
    path = write_config(
        tmp_path / "staging_refresh.yaml",
        {
            "buckets": [
                {
                    "name": "images",
                    "source": f"s3://{prod_bucket}/{area}images/",
                    "target": f"s3://{staging_bucket}/{area}images/",
                    "max_delete_fraction": 0.5,
                }
            ],
            "postgres": {
                "source_conn": dbs.source_conn,
                "target_conn": dbs.target_conn,
                "skip_tables": ["admin_config"],
            },
            "migrations": {
                "command": [sys.executable, "-m", "alembic", "-c", ini, "upgrade", "head"],
                "alembic_script_location": scripts,
            },
            "health": {"url": url, "sql": [{"name": "books present", "sql": "SELECT count(*) FROM books", "min": 1}]},
            "manifest_uri": f"s3://{staging_bucket}/_manifests/{area}",
        },
    )

    dry_code, dry = run_main(capsys, path, "--dry-run")
    assert dry_code == 0, dry
    assert dry["buckets"][0]["source_objects"] == 6 and dry["buckets"][0]["target_objects"] == 2
    assert dry["manifest"] is None and state["calls"] == 0
    assert len(rel_listing(s3, staging_bucket, f"{area}images/")) == 2  # nothing copied by the dry run

    code, summary, stderr = run_cli(path)

    assert code == 0, stderr[-3000:]
    assert rel_listing(s3, staging_bucket, f"{area}images/") == rel_listing(s3, prod_bucket, f"{area}images/")
    assert summary["objects_copied"] == 6 and summary["bytes_copied"] == sum(2048 + i for i in range(6))
    assert summary["buckets"][0]["objects_deleted"] == 1
    statuses = {t["table"]: t["status"] for t in summary["tables"]}
    assert statuses["public.alembic_version"] == "skipped"  # staging keeps its own schema version
    assert statuses["public.books"] == "synced"
    assert summary["versions"]["relation"] == "staging ahead of prod (expected)"
    assert summary["migrations"]["version_before"] == "b2" and summary["migrations"]["version_after"] == "c3"
    assert dbs.query("staging", "SELECT value FROM admin_config WHERE key = 'migrated_c3'") == [(True,)]
    assert summary["health"]["url"]["status"] == 200 and summary["health"]["sql"][0]["ok"] is True
    manifest = s3.get_object(Bucket=staging_bucket, Key=f"_manifests/{area}staging_refresh/latest.json")
    doc = json.loads(manifest["Body"].read())
    assert doc["manifest"] == summary["manifest"] and doc["rows_synced"] == summary["rows_synced"]
    assert doc["target"].startswith(dbs.target_conn) and "postgresql://" not in json.dumps(doc)

    state["healthy"] = False
    code, summary = run_main(capsys, path, "--skip-migrations")
    assert code == 1
    assert any("answered 503" in p for p in summary["problems"])


def test_engine_guard_refuses_a_prod_named_target_bucket(s3, buckets, area):
    """The staging rule reaches the engine through its guard hook, even past the config loader."""
    from greenlight.refresh.buckets import make_engine
    from greenlight.refresh.config import BucketMapping, RefreshConfig

    qa, prod = buckets
    # Built directly, past the loader (which refuses a prod-named target).
    mapping = BucketMapping(source=f"s3://{qa}/{area}", target=f"s3://{prod}/{area}", max_delete_count=1)
    config = RefreshConfig(buckets=[mapping], workers=4)
    put(s3, qa, f"{area}a.txt", b"a")
    engine = make_engine(config, [mapping], s3)
    (plan,) = engine.plan_all()
    with pytest.raises(RefusedError, match="named like prod"):
        engine.check(plan)
    assert rel_listing(s3, prod, area) == {}


def test_migrations_through_the_http_endpoint(tmp_path, capsys, refresh_dbs, health_server, monkeypatch):
    """The runbook's ``POST /api/v1/health/migrate`` through the http provider's ``HttpHook``: the
    config names an HTTP connection (the CLI reads ``AIRFLOW_CONN_STAGING_API``), whose host is the
    base URL and whose extra carries the API token header; a failing endpoint fails the run (exit 1)."""
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    url, state = health_server
    port = url.split(":")[2].split("/")[0]
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": int(port), "schema": "http"}
    conn["extra"] = {"X-Api-Token": "staging-token-1"}  # HttpHook sends the extra as headers
    monkeypatch.setenv("AIRFLOW_CONN_STAGING_API", json.dumps(conn))
    path = write_config(
        tmp_path / "staging_refresh.yaml",
        {
            "postgres": {"source_conn": dbs.source_conn, "target_conn": dbs.target_conn, "tables": ["users"]},
            "migrations": {"http": {"conn_id": "staging_api", "endpoint": "/api/v1/health/migrate"}},
        },
    )
    code, summary = run_main(capsys, path)
    assert code == 0, summary
    migrate_url = f"http://127.0.0.1:{port}/api/v1/health/migrate"
    assert summary["migrations"]["http"] == migrate_url and summary["migrations"]["status"] == 200
    assert state["posts"] == 1
    assert state["last_post"]["path"] == "/api/v1/health/migrate"
    assert state["last_post"]["headers"]["X-Api-Token"] == "staging-token-1"

    state["migrate_status"] = 500
    code, summary = run_main(capsys, path)
    assert code == 1
    assert summary["problems"] == [f"migrate: POST {migrate_url} answered 500: migrations failed: c3"]
    assert state["posts"] == 2

    # An undefined connection is refused before anything is copied.
    monkeypatch.delenv("AIRFLOW_CONN_STAGING_API")
    dbs.run("staging", "DELETE FROM users")
    code, summary = run_main(capsys, path)
    assert code == 2 and "AIRFLOW_CONN_STAGING_API" in summary["error"], summary
    assert dbs.query("staging", "SELECT count(*) FROM users") == [(0,)]


class StagingOnlyIdentity:
    """The staging connection of a separate account: every call works except reading prod objects
    server-side (CopyObject / UploadPartCopy get AccessDenied, as cross-account they would).
    Everything else goes to the real SeaweedFS client."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        if name.startswith("_"):  # no botocore internals: greenlight's signed fast path stays off
            raise AttributeError(name)
        if name in ("copy_object", "upload_part_copy"):
            from botocore.exceptions import ClientError

            def refused(**kwargs):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "cannot read prod"}}, name)

            return refused
        return getattr(self._client, name)


def test_buckets_stream_get_put_when_staging_cannot_read_prod(tmp_path, s3env, s3, buckets, area, staging_bucket):
    from greenlight.refresh.config import parse_config
    from greenlight.refresh.connections import from_env
    from greenlight.refresh.run import Refresh, refresh

    _, prod_bucket = buckets
    for i in range(4):
        put(s3, prod_bucket, f"{area}img/{i}.jpg", os.urandom(3000 + i), ContentType="image/jpeg")
    put(s3, prod_bucket, f"{area}img/large.bin", os.urandom(9 * 1024 * 1024))  # spills past the 8 MiB spool
    raw = {
        "buckets": [{"source": f"s3://{prod_bucket}/{area}img/", "target": f"s3://{staging_bucket}/{area}img/"}],
        "manifest_uri": str(tmp_path / "manifests"),
    }

    def run(config):
        return refresh(
            Refresh(
                parse_config(config),
                run_id="stream",
                resolve=from_env,
                s3=lambda: StagingOnlyIdentity(s3env.client()),
                s3_source=lambda: s3env.client(),
            )
        )

    with pytest.raises(Exception, match="AccessDenied|copies failed"):
        run(raw)  # server-side copies need an identity that can read prod
    summary = run({**raw, "source_aws_conn": "prod_s3"})

    assert summary["objects_copied"] == 5 and summary["problems"] == []
    assert rel_listing(s3, staging_bucket, f"{area}img/") == rel_listing(s3, prod_bucket, f"{area}img/")
    head = s3.head_object(Bucket=staging_bucket, Key=f"{area}img/0.jpg")
    assert head["ContentType"] == "image/jpeg"

"""The ``staging_refresh`` DAG under ``dag.test()``: real PostgreSQL pair (connections through the
postgres provider's ``PostgresHook`` from ``AIRFLOW_CONN_*``), real SeaweedFS (``aws_default``)."""

from __future__ import annotations

import os

import pytest
import refreshfixtures
from dagrun import run_dag
from helpers import put, rel_listing, write_config
from refreshfixtures import seed_runbook_schema

pg_pair = refreshfixtures.pg_pair  # the session's two PostgreSQL servers
refresh_dbs = refreshfixtures.refresh_dbs  # a fresh database on each

STAGING_BUCKET = "greenlight-refresh-staging"


@pytest.fixture
def refresh_setup(tmp_path, monkeypatch, s3, buckets, area, refresh_dbs, airflow_db):
    try:
        s3.create_bucket(Bucket=STAGING_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    _, prod_bucket = buckets
    seed_runbook_schema(refresh_dbs)
    for i in range(3):
        put(s3, prod_bucket, f"{area}images/{i}.jpg", os.urandom(1000))
    path = write_config(
        tmp_path / "staging_refresh.yaml",
        {
            "buckets": [
                {
                    "name": "images",
                    "source": f"s3://{prod_bucket}/{area}images/",
                    "target": f"s3://{STAGING_BUCKET}/{area}images/",
                }
            ],
            "postgres": {
                "source_conn": refresh_dbs.source_conn,
                "target_conn": refresh_dbs.target_conn,
                "skip_tables": ["admin_config"],
            },
            "health": {"sql": [{"name": "books present", "sql": "SELECT count(*) FROM books", "min": 1}]},
            "manifest_uri": str(tmp_path / "manifests"),
        },
    )
    monkeypatch.setenv("GREENLIGHT_REFRESH_CONFIG", str(path))
    return refresh_dbs, prod_bucket, area


def test_dag_refreshes_tables_and_buckets(refresh_setup, s3):
    dbs, prod_bucket, area = refresh_setup
    state, tasks, xcoms, _ = run_dag("staging_refresh")

    assert state == "success", tasks
    mapped = sorted(k for k in tasks if k.startswith("copy_tables."))
    assert len(mapped) == 3  # FK groups: authors+books+book_images, eval_runbooks, users
    assert all(tasks[k][0] == "success" for k in mapped)
    summary = xcoms["summary"]
    statuses = {t["table"]: t["status"] for t in summary["tables"]}
    assert statuses == {
        "public.admin_config": "skipped",
        "public.authors": "synced",
        "public.book_images": "synced",
        "public.books": "synced",
        "public.eval_runbook_jobs": "skipped",
        "public.eval_runbooks": "synced",
        "public.users": "synced",
    }
    assert summary["objects_copied"] == 3
    assert rel_listing(s3, STAGING_BUCKET, f"{area}images/") == rel_listing(s3, prod_bucket, f"{area}images/")
    assert dbs.query("staging", "SELECT condition_positives FROM eval_runbooks WHERE book_id = 533") == [
        (["clean", "bright gilt"],)
    ]
    assert summary["manifest"] and os.path.exists(summary["manifest"])


def test_dag_zero_row_trap_fails_the_run_without_emptying_staging(refresh_setup):
    dbs, _, _ = refresh_setup
    dbs.run("staging", "INSERT INTO eval_runbooks (book_id) VALUES (1), (2)")
    dbs.run("prod", "TRUNCATE eval_runbooks")

    state, tasks, _, _ = run_dag("staging_refresh", {"only": ["eval_runbooks"], "skip_migrations": True})

    assert state == "failed"
    assert tasks["copy_tables.0"][0] == "success"  # the table's failure is reported, not retried
    assert tasks["summary"] == ("failed", 1)  # failed at once, no retry
    assert dbs.query("staging", "SELECT count(*) FROM eval_runbooks") == [(2,)]

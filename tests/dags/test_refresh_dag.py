"""The ``staging_refresh`` DAG under ``dag.test()``: real PostgreSQL pair (connections through the
postgres provider's ``PostgresHook`` from ``AIRFLOW_CONN_*``), real SeaweedFS (``aws_default``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import refreshfixtures
import yaml
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


def test_dag_run_holds_its_targets_from_preflight_to_summary(refresh_setup, s3, monkeypatch):
    """A CLI refresh holding the staging targets refuses the DAG run at ``preflight`` (no retry,
    nothing copied); a CLI refresh started while the DAG run is between its tasks is refused; the
    run's ``summary`` releases the bucket target's and the staging database's leases."""
    from greenlight.refresh import checks, leases
    from greenlight.refresh.config import load_config
    from greenlight.refresh.connections import from_env
    from greenlight.refresh.run import Refresh, refresh
    from greenlight.storage.lease import LeaseHeldError

    dbs, _, area = refresh_setup
    target = f"s3://{STAGING_BUCKET}/{area}images/"

    def cli(run_id: str) -> Refresh:
        return Refresh(load_config(), run_id=run_id, resolve=from_env, s3=lambda: s3)

    books_before = dbs.query("staging", "SELECT count(*) FROM books")
    specs = leases.run_specs(cli("cli__by-hand"))
    assert sorted(s["resource"].split(":")[0] for s in specs) == ["postgres", "s3"]
    with leases.holding(s3, specs, run_id="cli__by-hand"):
        state, tasks, _, _ = run_dag("staging_refresh", {"skip_migrations": True})
        # The failed run's callback released only its own leases: the CLI still holds its own.
        assert [lease_doc(s3, s)["run_id"] for s in specs] == ["cli__by-hand"] * len(specs)
        assert not any(lease_doc(s3, s).get("released_at") for s in specs)
    assert state == "failed"
    assert tasks["preflight"] == ("failed", 1)  # refused at once, not retried
    assert not any(k.startswith("copy_tables") and v[0] == "success" for k, v in tasks.items())
    assert rel_listing(s3, STAGING_BUCKET, f"{area}images/") == {}
    assert dbs.query("staging", "SELECT count(*) FROM books") == books_before

    refused: list[str] = []
    real_health = checks.health

    def health_while_a_cli_refresh_tries(r):
        with pytest.raises(LeaseHeldError) as caught:
            refresh(cli("cli__during"))
        refused.append(str(caught.value))
        return real_health(r)

    monkeypatch.setattr(checks, "health", health_while_a_cli_refresh_tries)
    state, tasks, xcoms, run_id = run_dag("staging_refresh", {"skip_migrations": True})

    assert state == "success", tasks
    assert len(refused) == 1 and f"refresh run {run_id!r}" in refused[0]
    assert sorted(xcoms["summary"]["leases_released"]) == sorted(s["resource"] for s in specs)
    assert target in xcoms["summary"]["leases_released"]


def lease_doc(s3, spec: dict) -> dict:
    from greenlight.storage.lease import lease_key
    from greenlight.storage.s3 import parse_s3_uri

    root = parse_s3_uri(spec["root"])
    return json.loads(s3.get_object(Bucket=root.bucket, Key=lease_key(root, spec["resource"]))["Body"].read())


def test_a_failed_dag_run_releases_its_leases(refresh_setup, s3):
    """The migration fails after the copies: ``verify`` and ``summary`` never run, and the DAG's
    failure callback ends the run's hold at once (not at the leases' expiry)."""
    from greenlight.refresh import leases
    from greenlight.refresh.config import load_config
    from greenlight.refresh.connections import from_env
    from greenlight.refresh.run import Refresh

    path = os.environ["GREENLIGHT_REFRESH_CONFIG"]
    doc = yaml.safe_load(Path(path).read_text())
    doc["migrations"] = {"command": [sys.executable, "-c", "raise SystemExit('migration c3 failed')"]}
    write_config(Path(path), doc)

    state, tasks, _, run_id = run_dag("staging_refresh", {})

    assert state == "failed" and tasks["migrate"][0] == "failed", tasks
    assert tasks["summary"][0] == "upstream_failed"
    specs = leases.run_specs(Refresh(load_config(), run_id="x", resolve=from_env, s3=lambda: s3))
    docs = [lease_doc(s3, s) for s in specs]
    assert [d["run_id"] for d in docs] == [run_id] * len(specs) and all(d.get("released_at") for d in docs)

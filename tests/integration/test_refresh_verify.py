"""The refresh's verify step on two real embedded PostgreSQL servers, through the CLI entry point:
which tables it counts again after the copies committed, and that a migration's change is caught.
"""

from __future__ import annotations

import json
import sys

import refreshfixtures
from helpers import write_config

from greenlight.cli import main

pg_pair = refreshfixtures.pg_pair
refresh_dbs = refreshfixtures.refresh_dbs_each_reader


def seed(dbs) -> None:
    for side in ("prod", "staging"):
        dbs.run(
            side,
            "CREATE TABLE parents (id integer PRIMARY KEY)",
            "CREATE TABLE kids (id integer PRIMARY KEY, parent_id integer REFERENCES parents(id))",
            "CREATE TABLE notes (id integer PRIMARY KEY, body text)",
        )
    dbs.run(
        "prod",
        "INSERT INTO parents SELECT generate_series(1, 10)",
        "INSERT INTO kids SELECT g, 1 + g % 10 FROM generate_series(1, 40) g",
        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 25) g",
    )


def run(tmp_path, capsys, dbs, **extra) -> tuple[int, dict, dict]:
    doc = {
        "postgres": dbs.postgres(**extra.pop("postgres", {})),
        "manifest_uri": str(tmp_path / "manifests"),
        **extra,
    }
    code = main(["refresh", "--config", str(write_config(tmp_path / "staging_refresh.yaml", doc))])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads((tmp_path / "manifests" / "staging_refresh" / "latest.json").read_text()) if code == 0 else {}
    return code, summary, manifest


def test_without_migrations_truncated_tables_are_verified_by_the_copy_count(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed(dbs)
    # kids (not copied) references parents: parents is emptied with DELETE, so it is counted again.
    code, summary, manifest = run(tmp_path, capsys, dbs, postgres={"tables": ["parents", "notes"]})

    assert code == 0, summary
    checked = {t["table"]: t for t in manifest["detail"]["verification"]["tables"]}
    assert checked["public.notes"] == {
        "table": "public.notes",
        "rows_copied": 25,
        "rows_now": 25,
        "equal": True,
        "counted_by": "COPY, at the commit",
    }
    assert checked["public.parents"]["counted_by"] == "count(*)" and checked["public.parents"]["rows_now"] == 10
    assert dbs.query("staging", "SELECT count(*) FROM notes") == [(25,)]


def test_a_migration_that_deletes_rows_is_caught_by_the_recount(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed(dbs)
    delete = "import os, psycopg; psycopg.connect(os.environ['DATABASE_URL'], autocommit=True)" + (
        ".execute('DELETE FROM notes WHERE id > 20')"
    )
    code, summary, _ = run(tmp_path, capsys, dbs, migrations={"command": [sys.executable, "-c", delete]})

    assert code == 1
    assert summary["migrations"]["ran"] is True
    assert "public.notes: copied 25 rows, staging now has 20" in summary["problems"]
    assert all("kids" not in p and "parents" not in p for p in summary["problems"])

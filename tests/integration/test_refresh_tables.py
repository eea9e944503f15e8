"""Staging refresh of PostgreSQL tables, on two real embedded PostgreSQL servers (prod and staging).

Driven through the CLI entry point (``greenlight.cli.main``, the code behind
``python -m greenlight refresh``), reading its last stdout line as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import refreshfixtures
from helpers import write_config
from refreshfixtures import seed_runbook_schema

from greenlight.cli import main

pg_pair = refreshfixtures.pg_pair  # the session's two PostgreSQL servers
refresh_dbs = refreshfixtures.refresh_dbs_each_reader  # a fresh database on each, once per reader


def refresh(capsys, config_path, *args: str) -> tuple[int, dict]:
    code = main(["refresh", "--config", str(config_path), *args])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def config(tmp_path, dbs, **postgres) -> object:
    doc = {
        "postgres": dbs.postgres(**postgres),
        "manifest_uri": str(tmp_path / "manifests"),
    }
    return write_config(tmp_path / "staging_refresh.yaml", doc)


def by_table(summary: dict) -> dict[str, dict]:
    return {t["table"]: t for t in summary["tables"]}


def test_runbook_refresh_casts_jsonb_skips_seeded_table_and_resets_sequences(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    path = config(tmp_path, dbs, skip_tables=["admin_config"], mask={"users.email": "email"})

    code, summary = refresh(capsys, path)

    assert code == 0, summary
    tables = by_table(summary)
    assert tables["public.admin_config"] == {
        "table": "public.admin_config",
        "status": "skipped",
        "rows_source": None,
        "rows_target": None,
        "reason": "in skip_tables",
    }
    assert tables["public.eval_runbook_jobs"]["status"] == "skipped"  # only in staging (migration ahead)
    for name, rows in {"authors": 20, "books": 150, "book_images": 300, "eval_runbooks": 4, "users": 5}.items():
        row = tables[f"public.{name}"]
        assert (row["status"], row["rows_source"], row["rows_target"]) == ("synced", rows, rows), row
    assert summary["rows_synced"] == 20 + 150 + 300 + 4 + 5
    assert tables["public.eval_runbooks"]["reason"] == "cast condition_positives: text[] -> jsonb"
    assert tables["public.authors"]["reason"] == "staging-only columns got defaults: tier"
    # text[] -> jsonb, cast on the prod side: arrays become JSON arrays, NULL stays NULL.
    assert dbs.query("staging", "SELECT book_id, condition_positives FROM eval_runbooks ORDER BY id") == [
        (533, ["clean", "bright gilt"]),
        (181, ["tight"]),
        (12, []),
        (13, None),
    ]
    # The migration-seeded table keeps staging's own rows; the staging-only table is untouched.
    assert dbs.query("staging", "SELECT key FROM admin_config") == [("seeded_by_migration",)]
    assert dbs.query("staging", "SELECT status FROM eval_runbook_jobs") == [("staging only",)]
    # Columns only in staging got their defaults; stale staging rows are gone.
    assert dbs.query("staging", "SELECT DISTINCT tier FROM authors") == [("standard",)]
    assert dbs.query("staging", "SELECT count(*) FROM books WHERE title = 'stale book'") == [(0,)]
    # Sequences and identities continue after max(id).
    assert dbs.query("staging", "SELECT nextval('books_id_seq')") == [(151,)]
    assert dbs.query("staging", "INSERT INTO authors (name) VALUES ('new') RETURNING id") == [(21,)]
    # Masked in the prod SELECT: no prod e-mail address reached staging.
    emails = [e for (e,) in dbs.query("staging", "SELECT email FROM users")]
    assert len(set(emails)) == 5 and all(e.endswith("@example.invalid") for e in emails)
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["tables_synced"] == 5
    # The manifest says what read prod: the configured reader, for every copied table.
    assert {t["reader"] for t in manifest["detail"]["tables"]} == {dbs.reader}


def test_numeric_to_jsonb_cast(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    code, summary = refresh(capsys, config(tmp_path, dbs, tables=["admin_config"]))
    assert code == 0, summary
    assert [t["table"] for t in summary["tables"]] == ["public.admin_config"]
    assert dbs.query("staging", "SELECT key, value, jsonb_typeof(value) FROM admin_config ORDER BY key") == [
        ("fmv_weight", 0.35, "number"),
        ("max_jobs", 4, "number"),
        ("unset", None, None),
    ]


def test_zero_row_trap_keeps_staging_rows(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    path = config(tmp_path, dbs, skip_tables=["admin_config"])
    assert refresh(capsys, path)[0] == 0
    dbs.run("prod", "TRUNCATE eval_runbooks")  # the Lambda's silent empty read

    code, summary = refresh(capsys, path)

    assert code == 1
    row = by_table(summary)["public.eval_runbooks"]
    assert row["status"] == "failed"
    assert row["reason"].startswith("source returned 0 rows; staging has 4")
    assert row["rows_target"] == 4
    assert dbs.query("staging", "SELECT count(*) FROM eval_runbooks") == [(4,)]
    assert by_table(summary)["public.books"]["status"] == "synced"  # other groups are not held back

    code, summary = refresh(capsys, config(tmp_path, dbs, skip_tables=["admin_config"], allow_empty=["eval_runbooks"]))
    assert code == 0
    assert by_table(summary)["public.eval_runbooks"]["rows_target"] == 0


def test_zero_row_trap_remembers_the_previous_run(tmp_path, capsys, refresh_dbs):
    """Staging emptied by hand since the last refresh: the previous manifest still says it had rows."""
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    path = config(tmp_path, dbs, tables=["eval_runbooks"])
    assert refresh(capsys, path)[0] == 0
    dbs.run("prod", "TRUNCATE eval_runbooks")
    dbs.run("staging", "TRUNCATE eval_runbooks")
    code, summary = refresh(capsys, path)
    assert code == 1
    assert "the previous refresh copied 4" in summary["tables"][0]["reason"]


def test_failure_mid_table_leaves_old_staging_rows(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    # Staging rejects prices above 100: row 81 of books fails in the middle of the COPY.
    dbs.run("staging", "ALTER TABLE books ADD CONSTRAINT cheap CHECK (price IS NULL OR price <= 100)")
    before = {t: dbs.query("staging", f"SELECT * FROM {t} ORDER BY 1") for t in ("authors", "books", "book_images")}

    code, summary = refresh(capsys, config(tmp_path, dbs, skip_tables=["admin_config"]))

    assert code == 1
    tables = by_table(summary)
    assert tables["public.books"]["status"] == "failed"
    assert "cheap" in tables["public.books"]["reason"]
    # The whole FK group stays as it was (authors were copied first in the same transaction).
    assert tables["public.authors"]["reason"] == "not copied: public.books in the same FK group failed"
    assert tables["public.book_images"]["status"] == "failed"
    after = {t: dbs.query("staging", f"SELECT * FROM {t} ORDER BY 1") for t in ("authors", "books", "book_images")}
    assert after == before
    assert tables["public.users"]["status"] == "synced"


def test_no_safe_cast_fails_the_table_naming_column_and_types(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    dbs.run("staging", "ALTER TABLE users ALTER COLUMN name TYPE varchar(3)")
    code, summary = refresh(capsys, config(tmp_path, dbs, tables=["users"]))
    assert code == 1
    reason = summary["tables"][0]["reason"]
    assert "public.users.name: no safe cast from text (prod) to character varying(3) (staging)" in reason


def test_refuses_when_target_is_the_source_database(tmp_path, capsys, refresh_dbs, monkeypatch):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    monkeypatch.setenv("AIRFLOW_CONN_SAME_AS_SOURCE", dbs.prod)
    before = dbs.query("prod", "SELECT count(*) FROM books")
    path = write_config(
        tmp_path / "same.yaml",
        {"postgres": {"source_conn": dbs.source_conn, "target_conn": "same_as_source"}},
    )
    code, summary = refresh(capsys, path)
    assert code == 2
    assert summary["kind"] == "refused"
    assert "same server and database as the source" in summary["error"]
    assert dbs.query("prod", "SELECT count(*) FROM books") == before


def test_source_session_is_read_only(refresh_dbs):
    import psycopg

    from greenlight.refresh.catalog import connect

    with connect(refresh_dbs.prod, read_only=True) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE should_not_exist (id int)")


def test_dry_run_writes_nothing(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    snapshot = dbs.query("staging", "SELECT (SELECT count(*) FROM books), (SELECT count(*) FROM authors)")

    code, summary = refresh(capsys, config(tmp_path, dbs), "--dry-run")

    assert code == 0, summary
    tables = by_table(summary)
    assert (tables["public.books"]["rows_source"], tables["public.books"]["rows_target"]) == (150, 1)
    assert tables["public.admin_config"]["status"] == "would_sync"  # the numeric -> jsonb cast is planned
    assert dbs.query("staging", "SELECT (SELECT count(*) FROM books), (SELECT count(*) FROM authors)") == snapshot
    assert summary["manifest"] is None and not (tmp_path / "manifests").exists()


def test_rerun_is_idempotent(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    path = config(tmp_path, dbs, skip_tables=["admin_config"])
    first = refresh(capsys, path)
    state = dbs.query("staging", "SELECT (SELECT sum(id) FROM books), (SELECT last_value FROM books_id_seq)")
    second = refresh(capsys, path)
    assert first[0] == second[0] == 0
    assert first[1]["tables"] == second[1]["tables"]
    assert dbs.query("staging", "SELECT (SELECT sum(id) FROM books), (SELECT last_value FROM books_id_seq)") == state


def test_only_selects_tables_and_rejects_unknown_names(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    path = config(tmp_path, dbs)
    code, summary = refresh(capsys, path, "--only", "users", "public.eval_runbooks")
    assert code == 0
    assert [t["table"] for t in summary["tables"]] == ["public.eval_runbooks", "public.users"]
    code, summary = refresh(capsys, path, "--only", "no_such_table")
    assert code == 2 and "no_such_table" in summary["error"]


def test_fk_no_dangling_references(tmp_path, capsys, refresh_dbs):
    """A copied child whose parent is not copied must not leave references to missing rows; a
    parent whose (not copied) child references nothing is emptied with DELETE instead of TRUNCATE."""
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    before = dbs.query("staging", "SELECT id, title FROM books ORDER BY id")

    code, summary = refresh(capsys, config(tmp_path, dbs, tables=["books", "book_images"], skip_tables=[]))

    assert code == 1
    tables = by_table(summary)
    assert "books_author_id_fkey" in tables["public.books"]["reason"]
    assert dbs.query("staging", "SELECT id, title FROM books ORDER BY id") == before

    code, summary = refresh(capsys, config(tmp_path, dbs, tables=["authors", "books"]))
    assert code == 0, summary
    assert dbs.query("staging", "SELECT count(*) FROM books") == [(150,)]


def test_checksums_match_through_casts_and_leave_masked_columns_out(tmp_path, capsys, refresh_dbs):
    """``postgres.checksum``: computed on prod over the casting SELECT (same snapshot as the copy)
    and on staging after the commit; equal for a cast table (text[] -> jsonb), a key-column mapping
    and a masked table (the masked column is not compared), recorded in the manifest."""
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    path = config(
        tmp_path,
        dbs,
        tables=["eval_runbooks", "users", "authors", "books"],
        mask={"users.email": "hash"},
        checksum={"eval_runbooks": [], "users": [], "books": ["id", "title"]},
    )
    code, summary = refresh(capsys, path)
    assert code == 0, summary
    tables = by_table(summary)
    assert tables["public.eval_runbooks"]["checksum"]["equal"] is True
    assert tables["public.eval_runbooks"]["checksum"]["columns"] == [
        "id",
        "book_id",
        "condition_positives",
        "created_at",
    ]
    assert tables["public.users"]["checksum"]["columns"] == ["id", "name"]  # email is masked
    assert tables["public.books"]["checksum"]["columns"] == ["id", "title"]
    assert "checksum" not in tables["public.authors"]
    manifest = json.loads(Path(summary["manifest"]).read_text())
    checked = {t["table"]: t for t in manifest["detail"]["verification"]["tables"]}
    assert checked["public.books"]["checksum"]["source"] == checked["public.books"]["checksum"]["target"]


def test_checksum_catches_a_row_changed_in_staging(tmp_path, capsys, refresh_dbs):
    """A staging trigger rewrites one title as it is copied: row counts are equal, the checksum is
    not, and verification fails (exit 1) naming the table."""
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    dbs.run(
        "staging",
        "CREATE FUNCTION retitle() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.id = 7 THEN NEW.title := 'changed'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER retitle BEFORE INSERT ON books FOR EACH ROW EXECUTE FUNCTION retitle()",
    )
    path = config(tmp_path, dbs, tables=["authors", "books"], checksum={"books": ["id", "title"]})
    code, summary = refresh(capsys, path)
    assert code == 1, summary
    books = by_table(summary)["public.books"]
    assert (books["status"], books["rows_source"], books["rows_target"]) == ("synced", 150, 150)
    assert books["checksum"]["equal"] is False
    assert len(summary["problems"]) == 1 and summary["problems"][0].startswith(
        "public.books: checksum of (id, title) differs"
    )


def test_checksum_of_an_unknown_table_or_column_is_refused(tmp_path, capsys, refresh_dbs):
    dbs = refresh_dbs
    seed_runbook_schema(dbs)
    code, summary = refresh(capsys, config(tmp_path, dbs, tables=["users"], checksum=["nosuch"]))
    assert code == 2 and "postgres.checksum.nosuch" in summary["error"]
    code, summary = refresh(capsys, config(tmp_path, dbs, tables=["users"], checksum={"users": ["nosuch"]}))
    assert code == 1
    assert (
        by_table(summary)["public.users"]["reason"] == "checksum names column(s) nosuch that are not copied from prod"
    )


def test_groups_read_prod_as_of_the_exported_snapshot(refresh_dbs):
    """The CLI copies FK groups side by side from one exported prod snapshot: a row written to prod
    after the export is not copied by a group that adopts the snapshot; without it, it is."""
    from greenlight.refresh import catalog as pgcat
    from greenlight.refresh import tables as pg

    dbs = refresh_dbs
    seed_runbook_schema(dbs)

    def users_plan():
        with pgcat.connect(dbs.prod, read_only=True) as src, pgcat.connect(dbs.staging) as dst:
            prod, staging = pgcat.catalog(src, ["public.users"]), pgcat.catalog(dst, ["public.users"])
        return pg.plan_table(prod["public.users"].columns, staging["public.users"].columns, "public.users")

    holder, snapshot = pg.export_snapshot(dbs.prod)
    try:
        dbs.run("prod", "INSERT INTO users (email, name) VALUES ('late@example.com', 'Late')")
        (shared,) = pg.copy_group(dbs.prod, dbs.staging, [users_plan()], snapshot=snapshot, psql=dbs.psql)
        assert (shared.status, shared.rows_source) == ("synced", 5)
        assert dbs.query("staging", "SELECT count(*) FROM users") == [(5,)]
    finally:
        holder.close()
    (own,) = pg.copy_group(dbs.prod, dbs.staging, [users_plan()], psql=dbs.psql)
    assert (own.status, own.rows_source) == ("synced", 6)
    assert dbs.query("staging", "SELECT name FROM users WHERE email = 'late@example.com'") == [("Late",)]

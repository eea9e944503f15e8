"""``postgres.reader``: prod read by a ``psql`` child process (or in Python), on two real embedded
PostgreSQL servers, through the CLI entry point.

Where psql has to misbehave (die mid-copy, report a wrong row count) the test puts a small wrapper
script in ``postgres.psql`` that runs the real psql and then breaks its output: a real psql run
cut short, not a mock.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import refreshfixtures
from helpers import write_config
from refreshfixtures import seed_runbook_schema

from greenlight.cli import main
from greenlight.refresh import psqlreader

pg_pair = refreshfixtures.pg_pair
refresh_dbs = refreshfixtures.refresh_dbs_each_reader  # once per reader


def refresh(tmp_path, capsys, dbs, **postgres) -> tuple[int, dict, dict]:
    """Run the CLI; returns (exit code, JSON summary, the run's manifest or {})."""
    doc = {"postgres": dbs.postgres(**postgres), "manifest_uri": str(tmp_path / "manifests")}
    code = main(["refresh", "--config", str(write_config(tmp_path / "staging_refresh.yaml", doc))])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads(Path(summary["manifest"]).read_text()) if summary.get("manifest") else {}
    return code, summary, manifest


def by_table(summary: dict) -> dict[str, dict]:
    return {t["table"]: t for t in summary["tables"]}


def wrapper(tmp_path: Path, name: str, body: str) -> str:
    """An executable bash script that can stand in for psql; ``$REAL`` is the real psql."""
    real = shutil.which("psql")  # the psql-reader tests have one on PATH (refresh_dbs_each_reader)
    assert real
    path = tmp_path / name
    path.write_text(f'#!/bin/bash\nREAL="{real}"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


TYPES_DDL = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE TABLE every_type (id integer PRIMARY KEY, i2 smallint, i8 bigint, num numeric(12,3), "
    "r4 real, f8 double precision, flag boolean, t text, vc varchar(40), ch char(3), raw bytea, d date, "
    "ts timestamp, tz timestamptz, tm time, iv interval, u uuid, j json, jb jsonb, ints integer[], "
    "texts text[], ip inet, m mood)",
)
TYPES_ROWS = (
    "INSERT INTO every_type SELECT g, (g % 300)::smallint, g * 100000000000, g * 1.125, g / 3.0, g / 7.0, "
    "g % 2 = 0, 'line ' || g || E'\\ttab\\nnewline \\\\ backslash é ✓', 'v' || g, 'c' || (g % 10), "
    "decode(md5(g::text), 'hex'), date '2024-02-29' + g, timestamp '2025-01-01 12:34:56.789' + g * interval '1 h', "
    "timestamptz '2025-06-01 00:00:00+02' + g * interval '1 min', time '23:59:59.5', g * interval '1 day 3 s', "
    "md5(g::text)::uuid, json_build_object('g', g, 's', 'x\"y'), jsonb_build_object('g', g, 'a', jsonb_build_array(1, g)), "
    "ARRAY[g, NULL, -g], ARRAY['a b', NULL, 'q\"uote', ''], '10.0.0.1'::inet + g, "
    "(ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood FROM generate_series(1, 400) g",
    "INSERT INTO every_type (id) VALUES (0)",  # every column NULL
)


@pytest.mark.parametrize("copy_format", ["binary", "text"])
def test_every_type_arrives_as_it_is_in_prod(tmp_path, capsys, refresh_dbs, copy_format):
    dbs = refresh_dbs
    for side in ("prod", "staging"):
        dbs.run(side, *TYPES_DDL)
    dbs.run("prod", *TYPES_ROWS)
    dbs.run("staging", "INSERT INTO every_type (id, t) VALUES (1, 'stale')")

    code, summary, manifest = refresh(tmp_path, capsys, dbs, copy_format=copy_format)

    assert code == 0, summary
    (detail,) = manifest["detail"]["tables"]
    assert (detail["reader"], detail["format"], detail["rows_source"]) == (dbs.reader, copy_format, 401)
    rows = "SELECT t::text FROM every_type t ORDER BY id"
    assert dbs.query("staging", rows) == dbs.query("prod", rows)


def test_psql_runs_under_stdbuf_when_there_is_one_and_the_rows_are_the_same_without(
    tmp_path, capsys, refresh_dbs, monkeypatch
):
    """psql's stdout buffer (``stdbuf -o``, when stdbuf works here) changes how the bytes are
    chunked into the pipe, not what arrives in staging: the same rows with and without it."""
    dbs = refresh_dbs
    if dbs.reader != "psql":
        pytest.skip("psql reader only")
    found = psqlreader.find_stdbuf()
    if found is None:
        pytest.skip("no working stdbuf on this machine")
    for side in ("prod", "staging"):
        dbs.run(side, *TYPES_DDL)
    dbs.run("prod", *TYPES_ROWS)
    seen = tmp_path / "stdbuf-setting"
    spy = wrapper(tmp_path, "spy-psql", f'echo "${{_STDBUF_O:-none}}" >> "{seen}"\nexec "$REAL" "$@"')
    rows = "SELECT t::text FROM every_type t ORDER BY id"

    for stdbuf in (found, None):
        monkeypatch.setattr(psqlreader, "find_stdbuf", lambda stdbuf=stdbuf: stdbuf)
        dbs.run("staging", "TRUNCATE every_type", "INSERT INTO every_type (id, t) VALUES (1, 'stale')")
        code, summary, _ = refresh(tmp_path, capsys, dbs, psql=spy)
        assert code == 0, summary
        assert dbs.query("staging", rows) == dbs.query("prod", rows)

    assert seen.read_text().split() == [str(psqlreader.STDOUT_BUFFER), "none"]


def test_a_prod_error_mid_copy_fails_the_table_and_keeps_staging(tmp_path, capsys, refresh_dbs):
    """Row 50 of 100 cannot be read as the staging type (json holding \\u0000 -> jsonb): prod's
    COPY fails after sending 49 rows; the table fails with prod's message, staging keeps its rows."""
    dbs = refresh_dbs
    dbs.run("prod", "CREATE TABLE docs (id integer PRIMARY KEY, body json)")
    dbs.run("staging", "CREATE TABLE docs (id integer PRIMARY KEY, body jsonb)")
    dbs.run(
        "prod",
        "INSERT INTO docs SELECT g, CASE WHEN g = 50 THEN '\"\\u0000\"'::json "
        "ELSE json_build_object('g', g) END FROM generate_series(1, 100) g",
    )
    dbs.run("staging", "INSERT INTO docs VALUES (7, '{\"old\": true}')")

    code, summary, _ = refresh(tmp_path, capsys, dbs)

    assert code == 1
    row = by_table(summary)["public.docs"]
    assert row["status"] == "failed"
    assert "unsupported Unicode escape sequence" in row["reason"]
    assert dbs.query("staging", "SELECT id, body FROM docs") == [(7, {"old": True})]


def test_psql_dying_mid_copy_fails_the_group_and_keeps_staging(tmp_path, capsys, refresh_dbs):
    """psql is killed after 20,000 bytes of books: the FK group (authors, books, book_images) is
    rolled back and named; other groups are copied."""
    dbs = refresh_dbs
    if dbs.reader != "psql":
        pytest.skip("psql reader only")
    seed_runbook_schema(dbs, books=3000)
    before = {t: dbs.query("staging", f"SELECT * FROM {t} ORDER BY 1") for t in ("authors", "books", "book_images")}
    dying = wrapper(
        tmp_path,
        "dying-psql",
        'case "$*" in *\'"public"."books"\'*) "$REAL" "$@" | head -c 20000; kill -KILL $$ ;; esac\nexec "$REAL" "$@"',
    )

    code, summary, _ = refresh(tmp_path, capsys, dbs, skip_tables=["admin_config"], psql=dying)

    assert code == 1
    tables = by_table(summary)
    assert tables["public.books"]["status"] == "failed"
    assert tables["public.books"]["reason"].startswith("PsqlError: psql exited -9")
    assert tables["public.authors"]["reason"] == "not copied: public.books in the same FK group failed"
    assert tables["public.users"]["status"] == "synced"
    after = {t: dbs.query("staging", f"SELECT * FROM {t} ORDER BY 1") for t in ("authors", "books", "book_images")}
    assert after == before


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("COPY 999999", "read 999999 rows from prod but staging took 5"),
        ("", "psql printed no COPY row count"),
    ],
)
def test_rows_read_by_psql_must_match_rows_written(tmp_path, capsys, refresh_dbs, tag, reason):
    """psql's ``COPY n`` tag is the count of rows read from prod: a wrong or missing one fails the table."""
    dbs = refresh_dbs
    if dbs.reader != "psql":
        pytest.skip("psql reader only")
    seed_runbook_schema(dbs)
    dbs.run("staging", "INSERT INTO users (email, name) VALUES ('stale@example.com', 'Stale')")
    before = dbs.query("staging", "SELECT * FROM users ORDER BY id")
    lying = wrapper(
        tmp_path,
        "lying-psql",
        'args=()\nfor a in "$@"; do\n  case "$a" in --output=*) out="${a#--output=}"; '
        'args+=(--output=/dev/null) ;; *) args+=("$a") ;; esac\ndone\n'
        f'"$REAL" "${{args[@]}}" || exit $?\necho "{tag}" > "$out"',
    )

    code, summary, _ = refresh(tmp_path, capsys, dbs, tables=["users"], psql=lying)

    assert code == 1
    row = by_table(summary)["public.users"]
    assert row["status"] == "failed" and reason in row["reason"]
    assert dbs.query("staging", "SELECT * FROM users ORDER BY id") == before


def test_the_password_reaches_psql_only_through_its_environment(tmp_path, capsys, caplog, refresh_dbs, monkeypatch):
    """psql's command line (what ``ps`` shows, /proc/PID/cmdline) holds no connection parameter; the
    password is in its ``PGPASSWORD``, and in no log line, summary or manifest."""
    dbs = refresh_dbs
    if dbs.reader != "psql":
        pytest.skip("psql reader only")
    seed_runbook_schema(dbs)
    password = "pw-Quokka-8c1f0e"  # noqa: S105 - a test role's password
    dbs.run(
        "prod",
        f"CREATE ROLE greenlight_reader LOGIN PASSWORD '{password}'",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO greenlight_reader",
    )
    uri = dbs.prod.replace("postgresql://", "postgres://", 1).split("@", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_" + dbs.source_conn.upper(), f"postgres://greenlight_reader:{password}@{uri}")
    seen = tmp_path / "seen"
    spy = wrapper(
        tmp_path,
        "spy-psql",
        f'tr "\\0" "\\n" < /proc/$$/cmdline >> "{seen}.argv"\n'
        f'printf "%s %s\\n" "$PGUSER" "$PGPASSWORD" >> "{seen}.env"\nexec "$REAL" "$@"',
    )

    caplog.set_level("DEBUG")
    code, summary, manifest = refresh(tmp_path, capsys, dbs, tables=["users"], psql=spy)

    assert code == 0, summary
    assert manifest["detail"]["tables"][0]["reader"] == "psql"
    argv = Path(f"{seen}.argv").read_text()
    assert "\\copy" in argv and password not in argv and "greenlight_reader" not in argv
    assert Path(f"{seen}.env").read_text().split() == ["greenlight_reader", password]
    assert "read by psql" in caplog.text
    assert password not in caplog.text + json.dumps(summary) + json.dumps(manifest)


def test_psql_required_but_missing_is_refused_before_anything_changes(tmp_path, capsys, refresh_dbs, monkeypatch):
    dbs = refresh_dbs
    if dbs.reader != "psql":
        pytest.skip("the reader is set by the test")
    seed_runbook_schema(dbs)
    before = dbs.query("staging", "SELECT count(*) FROM books")

    code, summary, _ = refresh(tmp_path, capsys, dbs, reader="psql", psql=str(tmp_path / "no-such-psql"))
    assert code == 2
    assert "postgres.psql" in summary["error"] and "no-such-psql" in summary["error"]

    monkeypatch.setenv("PATH", str(tmp_path))  # no psql anywhere
    code, summary, _ = refresh(tmp_path, capsys, dbs, reader="psql")
    assert code == 2 and "postgres.reader: no psql on PATH" in summary["error"]
    assert dbs.query("staging", "SELECT count(*) FROM books") == before

    # auto: without psql, prod is read in Python.
    code, summary, manifest = refresh(tmp_path, capsys, dbs, reader="auto", tables=["users"])
    assert code == 0, summary
    assert manifest["detail"]["tables"][0]["reader"] == "python"

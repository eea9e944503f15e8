"""``staging_refresh.yaml`` through the shared loader: every error names the file and the key path
and exits 2; defaults; the CLI refuses a bad file before connecting to anything (no servers)."""

from __future__ import annotations

import json

import pytest

from greenlight.cli import main
from greenlight.errors import ConfigError
from greenlight.refresh.config import load_config, parse_config

PG = {"source_conn": "app_db", "target_conn": "app_staging_db"}
A, B, C = "s3://images-a/", "s3://images-b/", "s3://images-c/"


def pg(**extra):
    return {"postgres": {**PG, **extra}}


def refused(raw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, path="staging_refresh.yaml")
    assert info.value.exit_code == 2
    text = str(info.value)
    assert text.startswith("staging_refresh.yaml: ")
    return text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "staging_refresh.yaml: expected a mapping at the top level, got None"),
        (["postgres"], "expected a mapping at the top level"),
        ({**pg(), "wokers": 4}, "unknown key 'wokers' (did you mean 'workers'?)"),
        ({**pg(), "path": "/elsewhere"}, "unknown key 'path'"),  # set by the loader, not by the file
        ({"postgres": ["app_db"]}, "postgres: expected a mapping, got ['app_db']"),
        ({"postgres": {}}, "postgres: missing required key 'source_conn'"),
        (pg(tables="books"), "postgres.tables: input should be a valid list, got 'books'"),
        (pg(tables=["books", "users", "books"]), "postgres.tables: 'books' is listed more than once"),
        (pg(skip_tables=["users", 7]), "postgres.skip_tables[1]: input should be a valid string, got 7"),
        (pg(allow_empty=["a-b"]), "postgres.allow_empty[0]: 'a-b' is not a table name"),
        (pg(schemas=[]), "postgres.schemas: name at least one schema"),
        (pg(schemas=["public", "x y"]), "postgres.schemas[1]: 'x y' is not a schema name"),
        (pg(mask=["users.email"]), "postgres.mask: input should be a valid dictionary"),
        (pg(copy_format="csv"), "postgres.copy_format: input should be 'auto', 'binary' or 'text', got 'csv'"),
        (pg(checksum="books"), "postgres.checksum: expected a list of tables or a mapping table -> columns"),
        (pg(checksum={"books": "id"}), "postgres.checksum: books: expected a list of column names, got 'id'"),
        (pg(workers="8"), "postgres.workers: input should be a valid integer, got '8'"),  # no coercion
        (pg(workers=True), "postgres.workers: input should be a valid integer, got True"),
        (pg(workers=33), "postgres.workers: input should be less than or equal to 32"),
        ({**pg(), "workers": 0}, "staging_refresh.yaml: workers: input should be greater than or equal to 1"),
        ({"buckets": A}, "buckets: expected a list of mappings with 'source' and 'target'"),
        ({"buckets": [A]}, "buckets[0]: expected a mapping with 'source' and 'target', got 's3://images-a/'"),
        ({"buckets": [{"source": A}]}, "buckets[0]: missing required key 'target'"),
        ({"buckets": [{"source": A, "target": B, "max_delete_fraction": 1.5}]}, "buckets[0].max_delete_fraction"),
        ({"buckets": [{"source": A, "target": B, "max_delete_count": -1}]}, "buckets[0].max_delete_count"),
        ({"buckets": [{"source": A, "target": B, "colour": 1}]}, "buckets[0]: unknown key 'colour'"),
        (
            {"buckets": [{"source": A, "target": B}, {"source": A, "target": C}]},
            "buckets: the mapping 's3://images-a/' is listed more than once",
        ),
        (
            {"buckets": [{"source": A, "target": B}], "manifest_uri": "s3://images-a/_manifests/"},
            "manifest_uri: in a source bucket; the refresh never writes to prod",
        ),
        (
            {"buckets": [{"source": A, "target": B}], "manifest_uri": "s3://images-b/_manifests/"},
            "manifest_uri: overlaps bucket target s3://images-b/; the sync would delete it",
        ),
        ({**pg(), "migrations": {}}, "migrations: give exactly one of 'command' or 'http'"),
        ({**pg(), "migrations": {"command": 3}}, "migrations.command: expected a string or a list of strings, got 3"),
        ({**pg(), "migrations": {"command": "x", "timeot_s": 5}}, "migrations: unknown key 'timeot_s'"),
        ({**pg(), "migrations": {"command": "x", "timeout_s": 0}}, "migrations.timeout_s: input should be greater"),
        ({**pg(), "migrations": {"http": "https://x/"}}, "migrations.http: expected a mapping, got 'https://x/'"),
        ({**pg(), "migrations": {"http": {"conn_id": "a b"}}}, "migrations.http.conn_id: 'a b' is not a connection id"),
        ({**pg(), "migrations": {"http": {"conn_id": "api", "method": "DELETE"}}}, "migrations.http.method"),
        ({**pg(), "migrations": {"http": {"conn_id": "api", "expect_status": [200, "x"]}}}, "expect_status[1]"),
        ({**pg(), "health": 3}, "health: expected a mapping, got 3"),
        ({**pg(), "health": {"sql": ["SELECT 1"]}}, "health.sql[0]: expected a mapping with 'name' and 'sql'"),
        ({**pg(), "health": {"sql": [{"name": "books"}]}}, "health.sql[0]: missing required key 'sql'"),
        ({**pg(), "health": {"sql": [{"name": "b", "sql": "s", "min": "1"}]}}, "health.sql[0].min"),
    ],
)
def test_errors_name_the_file_and_key_path(raw, message):
    assert message in refused(raw)


def test_every_problem_is_reported_at_once():
    text = refused(pg(workers=0, copy_format="csv", colour="red"))
    for part in ("postgres.workers:", "postgres.copy_format:", "postgres: unknown key 'colour'"):
        assert part in text


def test_defaults():
    raw = {**pg(), "buckets": [{"source": A, "target": B + "img/"}], "migrations": {"http": {"conn_id": "api"}}}
    config = parse_config(raw)
    assert (config.aws_conn, config.source_aws_conn, config.workers, config.manifest_uri, config.lease_uri) == (
        "aws_default",
        None,
        32,
        None,
        None,
    )
    assert config.path == "<config>" and config.health is None
    section = config.postgres
    assert section.schemas == ["public"] and section.tables is None and section.skip_tables == []
    assert (section.copy_format, section.workers, section.mask, section.checksum) == ("auto", 2, {}, [])
    (mapping,) = config.buckets
    assert (mapping.max_delete_fraction, mapping.max_delete_count, mapping.label) == (0.10, 1000, A)
    http = config.migrations.http
    assert (http.endpoint, http.method, http.timeout_s, http.expect_status) == ("", "POST", 300, [200, 201, 202, 204])
    assert config.migrations.timeout_s == 900 and config.migrations.command is None


def test_values_are_normalised_for_the_engine():
    config = parse_config(
        {"postgres": {**PG, "tables": ["books", "audit.events"], "checksum": {"books": ["id"]}}, "workers": 4}
    )
    assert config.postgres.qualify("books") == "public.books"
    assert config.postgres.checksum_for("public.books") == ["id"] and config.postgres.checksum_for("x.y") is None
    assert config.names() == ["books", "audit.events"]
    assert config.select(["books"]) == ([], {"public.books"})


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "staging_refresh.yaml"
    path.write_text("postgres:\n  source_conn: app_db\n  target_conn: app_staging_db\n  tables: [books, 'x;y']\n")
    with pytest.raises(ConfigError, match=r"staging_refresh\.yaml: postgres\.tables\[1\]: 'x;y' is not a table name"):
        load_config(path)

    path.write_text("postgres:\n  source_conn: a\n  source_conn: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'source_conn' at line 3"):
        load_config(path)

    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")

    path.write_text("postgres: {source_conn: app_db, target_conn: app_staging_db}\n")
    assert load_config(path).path == str(path)


def test_cli_refuses_a_bad_config_with_exit_2(tmp_path, capsys):
    """Refused while reading the file: no connection is resolved (none is defined here)."""
    path = tmp_path / "staging_refresh.yaml"
    path.write_text("postgres: {source_conn: app_db, target_conn: prod_db}\n")
    assert main(["refresh", "--config", str(path), "--dry-run"]) == 2
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["exit_code"] == 2 and summary["kind"] == "config"
    assert f"{path}: postgres: target_conn 'prod_db' is named like prod" in summary["error"]


def test_lease_roots():
    """A target's lease lives where a promotion into that bucket keeps its leases by default; a
    whole-bucket target needs an s3:// manifest_uri or lease_uri (else refused, naming the key)."""
    prefix = parse_config({"buckets": [{"source": A, "target": B + "img/"}]})
    assert str(prefix.lease_root(prefix.buckets[0])) == "s3://images-b/_greenlight/manifests/"
    assert str(prefix.database_lease_root()) == "s3://images-b/_greenlight/manifests/"
    whole = {"buckets": [{"source": A, "target": B}], "manifest_uri": "s3://refresh-records/_greenlight/"}
    config = parse_config(whole)
    assert str(config.lease_root(config.buckets[0])) == "s3://refresh-records/_greenlight/"
    config = parse_config({**whole, "lease_uri": "s3://images-c/leases/"})
    assert str(config.lease_root(config.buckets[0])) == "s3://images-c/leases/"
    assert str(config.database_lease_root()) == "s3://images-c/leases/"
    assert parse_config(pg()).database_lease_root() is None  # nowhere on S3: no database lease

    text = refused({"buckets": [{"source": A, "target": B}], "manifest_uri": "/var/refresh"})
    assert "buckets[0].target: no place for the lease of s3://images-b/" in text and "lease_uri" in text
    text = refused({**whole, "lease_uri": B + "leases/"})
    assert "lease_uri:" in text and "overlaps bucket target s3://images-b/" in text
    assert "lease_uri: in a source bucket" in refused({**whole, "lease_uri": A + "leases/"})
    assert "lease_uri: " in refused({**whole, "lease_uri": "/tmp/leases"})

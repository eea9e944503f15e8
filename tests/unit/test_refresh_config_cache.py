"""The validated-document cache of ``staging_refresh.yaml`` (greenlight.doccache, issue P8).

A ``greenlight refresh`` whose config was validated before by the same schema skips pydantic; the
schema (greenlight.refresh.configschema) stays the only judge, and the rules that need several keys
at once run on every load. pydantic imported in the process turns the cache off (the rule for
Airflow processes), and pytest's process imports it: the in-process tests switch that one check off
with monkeypatch to run the cache path; the subprocess tests at the end check the real thing.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from greenlight import doccache
from greenlight.errors import ConfigError
from greenlight.refresh import config as refresh_config
from greenlight.refresh.config import load_config, parse_config

A, B, C = "s3://images-a/", "s3://images-b/", "s3://images-c/"
PG = {"source_conn": "app_db", "target_conn": "app_staging_db"}

CONFIGS = {
    "buckets only": {
        "buckets": [
            {"source": "s3://images-a", "target": "s3://images-b/img", "name": "images", "max_delete_fraction": 1},
            {"source": A + "docs/", "target": C + "docs/", "max_delete_count": 0},
        ],
        "aws_conn": "staging_s3",
        "source_aws_conn": "prod_s3",
        "workers": 8,
    },
    "postgres in full": {
        "postgres": {
            **PG,
            "schemas": ["public", "audit"],
            "tables": ["books", "audit.events", "users"],
            "skip_tables": ["admin_config"],
            "allow_empty": ["audit.events"],
            "mask": {"users.email": "email", "audit.events.ip": "redact"},
            "checksum": ["books", "audit.events"],
            "copy_format": "binary",
            "workers": 4,
            "reader": "psql",
            "psql": "/usr/lib/postgresql/16/bin/psql",
        },
        "manifest_uri": "/var/lib/greenlight/refresh-manifests",
    },
    "checksum columns, python reader": {
        "postgres": {**PG, "tables": None, "checksum": {"books": ["id", "title"]}, "reader": "python", "psql": None},
    },
    "migrations command": {
        "postgres": PG,
        "migrations": {
            "command": ["alembic", "upgrade", "head"],
            "cwd": "/opt/app",
            "timeout_s": 120,
            "alembic_script_location": "/opt/app/alembic",
        },
    },
    "migrations command as a string": {"postgres": PG, "migrations": {"command": "alembic upgrade head", "http": None}},
    "migrations http": {
        "postgres": PG,
        "migrations": {
            "http": {"conn_id": "staging_api", "endpoint": "/migrate", "method": "PUT", "expect_status": [200]},
            "timeout_s": 60.5,
        },
    },
    "health url and sql": {
        "postgres": PG,
        "buckets": [{"source": A, "target": B}],
        "manifest_uri": "s3://refresh-records/_greenlight/",
        "lease_uri": "s3://refresh-records/leases/",
        "health": {
            "url": "https://staging.example/health",
            "expect_status": 204,
            "timeout_s": 5,
            "sql": [
                {"name": "books present", "sql": "SELECT count(*) FROM books", "min": 1},
                {"name": "up", "sql": "SELECT true"},
            ],
        },
    },
    "sections set to null": {
        "postgres": PG,
        "migrations": None,
        "health": None,
        "manifest_uri": None,
        "lease_uri": None,
    },
}

# Refused by the schema (several keys at fault), by a section's own rule, and by the cross-key rules.
INVALID = {
    "schema": {"postgres": {**PG, "workers": 0, "copy_format": "csv", "colour": "red"}, "wokers": 4},
    "section rule": {"postgres": {"source_conn": "app_db", "target_conn": "prod_db"}},
    "cross-key": {"buckets": [{"source": A, "target": "s3://images-prod/"}]},
    "lease": {"buckets": [{"source": A, "target": B}], "manifest_uri": B + "_manifests/"},
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The cache on, in a directory of this test. pydantic is imported in this process, which would
    turn the cache off: the check is switched off here (the subprocess tests check it for real)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(directory))
    monkeypatch.delenv(doccache.SWITCH_ENV, raising=False)
    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    return directory


@pytest.fixture
def validations(monkeypatch):
    """Counts the schema's validations (the real ones: each call goes through)."""
    calls = []
    real = refresh_config.validate_document

    def counting(raw, path):
        calls.append(path)
        return real(raw, path)

    monkeypatch.setattr(refresh_config, "validate_document", counting)
    return calls


def entries(directory) -> list:
    return sorted(p.name for p in directory.glob("*.json")) if directory.is_dir() else []


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_cache_hit_gives_the_config_direct_validation_gives(name, tmp_path, monkeypatch, validations):
    directory = tmp_path / "cache"
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(directory))
    importlib.import_module("pydantic")  # as in an Airflow process: validated directly, nothing cached
    assert doccache.validator_loaded()
    direct = parse_config(CONFIGS[name], path="staging_refresh.yaml")
    assert entries(directory) == [] and len(validations) == 1

    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    missed = parse_config(CONFIGS[name], path="staging_refresh.yaml")
    assert len(validations) == 2 and len(entries(directory)) == 1
    hit = parse_config(CONFIGS[name], path="staging_refresh.yaml")
    assert len(validations) == 2, "the second load must come from the cache"
    for got in (missed, hit):
        assert got == direct
        assert repr(got) == repr(direct)  # same values and same types (1 stays 1, 1.0 stays 1.0)
        assert got.names() == direct.names() and got.select(None) == direct.select(None)
        assert [got.lease_root(b) for b in got.buckets] == [direct.lease_root(b) for b in direct.buckets]
        assert got.database_lease_root() == direct.database_lease_root()


def test_the_cached_config_is_the_validated_one(cache, validations):
    """Spot checks of what a hit returns: canonical bucket URIs, numbers as the schema made them,
    nested sections with their defaults, and the methods the run uses."""
    for name in ("buckets only", "postgres in full", "migrations http", "health url and sql"):
        parse_config(CONFIGS[name])
    buckets, pg, http, health = (
        parse_config(CONFIGS[name])
        for name in ("buckets only", "postgres in full", "migrations http", "health url and sql")
    )
    assert len(validations) == 4 and len(entries(cache)) == 4
    first, second = buckets.buckets
    assert (first.source, first.target, first.label, first.max_delete_fraction) == (A, B + "img/", "images", 1.0)
    assert (second.max_delete_count, second.max_delete_fraction, second.label) == (0, 0.10, A + "docs/")
    assert buckets.select(["images"]) == ([first], set())
    assert str(buckets.lease_root(first)) == "s3://images-b/_greenlight/manifests/"
    section = pg.postgres
    assert section.masks_for("audit.events") == {"ip": "redact"} and section.masks_for("public.users") == {
        "email": "email"
    }
    assert section.checksum_for("public.books") == [] and section.checksum_for("public.users") is None
    assert section.qualify("users") == "public.users" and pg.select(["users"]) == ([], {"public.users"})
    assert http.migrations.http.method == "PUT" and http.migrations.http.timeout_s == 300.0
    assert http.migrations.command is None and http.migrations.timeout_s == 60.5
    assert [check.min for check in health.health.sql] == [1.0, None] and health.health.timeout_s == 5.0
    assert str(health.database_lease_root()) == "s3://refresh-records/leases/"


@pytest.mark.parametrize("name", list(INVALID))
def test_an_invalid_config_gives_the_same_error_every_time_and_is_not_cached(name, tmp_path, monkeypatch):
    raw = INVALID[name]
    monkeypatch.setenv(doccache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as direct:
        parse_config(raw, path="staging_refresh.yaml")
    monkeypatch.setattr(doccache, "validator_loaded", lambda: False)
    for _ in range(3):
        with pytest.raises(ConfigError) as err:
            parse_config(raw, path="staging_refresh.yaml")
        assert str(err.value) == str(direct.value) and err.value.exit_code == 2
    assert entries(tmp_path / "cache") == []
    text = str(direct.value)
    assert text.startswith("staging_refresh.yaml: ")
    expected = {
        "schema": ["postgres.workers: input should be greater", "postgres.copy_format:", "did you mean 'workers'?"],
        "section rule": ["postgres: target_conn 'prod_db' is named like prod"],
        "cross-key": ["buckets[0].target: bucket 'images-prod' is named like prod"],
        "lease": ["manifest_uri: overlaps bucket target s3://images-b/"],
    }[name]
    for part in expected:
        assert part in text


def test_an_edited_config_is_validated_again(cache, tmp_path, validations):
    path = tmp_path / "staging_refresh.yaml"
    path.write_text("postgres: {source_conn: app_db, target_conn: app_staging_db, workers: 3}\n")
    assert load_config(path).postgres.workers == 3
    assert load_config(path).postgres.workers == 3
    assert load_config(path).path == str(path)
    assert len(validations) == 1 and len(entries(cache)) == 1

    path.write_text("postgres: {source_conn: app_db, target_conn: app_staging_db, workers: 33}\n")  # now invalid
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"staging_refresh\.yaml: postgres\.workers: input should be less"):
            load_config(path)
    path.write_text("postgres: {source_conn: app_db, target_conn: app_staging_db, workers: 4}\n")
    assert load_config(path).postgres.workers == 4
    assert len(validations) == 4 and len(entries(cache)) == 2


def test_the_path_is_not_part_of_the_cached_verdict(cache, validations):
    """One document under two file names: one validation, and each config (and error) names its own file."""
    assert parse_config(CONFIGS["buckets only"], path="a.yaml").path == "a.yaml"
    assert parse_config(CONFIGS["buckets only"], path="b.yaml").path == "b.yaml"
    assert len(validations) == 1


def test_schema_defaults_are_the_runtime_defaults():
    """The normalized document leaves unset keys out, so the runtime classes supply the defaults:
    the schema's must be the same, key for key, and the same keys must be required."""
    from greenlight.refresh import configschema as schema

    pairs = [
        (schema.RefreshFile, refresh_config.RefreshConfig),
        (schema.BucketModel, refresh_config.BucketMapping),
        (schema.PostgresModel, refresh_config.PostgresSection),
        (schema.HttpMigrationModel, refresh_config.HttpMigration),
        (schema.MigrationsModel, refresh_config.Migrations),
        (schema.SqlCheckModel, refresh_config.SqlCheck),
        (schema.HealthModel, refresh_config.Health),
    ]
    missing = dataclasses.MISSING
    for model, runtime in pairs:
        fields = {f.name: f for f in dataclasses.fields(runtime) if f.name != "path"}  # path: not a key of the file
        assert set(fields) == set(model.model_fields), runtime.__name__
        for name, info in model.model_fields.items():
            f = fields[name]
            default = f.default_factory() if f.default_factory is not missing else f.default
            if info.is_required():
                assert default is missing, f"{runtime.__name__}.{name}"
            else:
                assert info.get_default(call_default_factory=True) == default, f"{runtime.__name__}.{name}"


# ------------------------------------------------------------------------- a real, fresh process
PROBE = textwrap.dedent(
    """
    import json, sys
    import greenlight.cli.refresh
    from greenlight.refresh.config import load_config
    config = load_config(sys.argv[1])
    print(json.dumps({"pydantic": "pydantic" in sys.modules, "config": repr(config)}))
    """
)


def fresh_load(path, env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def fresh_env(tmp_path) -> dict:
    env = {**os.environ, doccache.CACHE_DIR_ENV: str(tmp_path / "cache")}
    env.pop(doccache.SWITCH_ENV, None)
    return env


def test_a_second_process_loads_a_cached_config_without_pydantic(tmp_path):
    path = tmp_path / "staging_refresh.yaml"
    path.write_text(yaml.safe_dump(CONFIGS["health url and sql"]))
    env = fresh_env(tmp_path)

    first = fresh_load(path, env)
    assert first["pydantic"], "a first-ever load must validate with the schema"
    second = fresh_load(path, env)
    assert not second["pydantic"], "a cached config must load without importing pydantic"
    assert second["config"] == first["config"]
    off = fresh_load(path, {**env, doccache.SWITCH_ENV: "0"})
    assert off["pydantic"] and off["config"] == first["config"]


def test_an_invalid_config_is_refused_by_every_fresh_cli_run(tmp_path):
    """Refused while reading the file (no connection is defined here): exit 2, every time."""
    path = tmp_path / "staging_refresh.yaml"
    path.write_text("postgres: {source_conn: app_db, target_conn: prod_db}\n")
    env = fresh_env(tmp_path)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "greenlight", "refresh", "--config", str(path), "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert f"{path}: postgres: target_conn 'prod_db' is named like prod" in done.stdout + done.stderr
    assert entries(tmp_path / "cache") == []

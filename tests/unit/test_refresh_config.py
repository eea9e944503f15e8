"""The refresh's cast table and config validation (no servers)."""

from __future__ import annotations

import pytest

from greenlight.errors import ConfigError
from greenlight.refresh.casts import NoSafeCastError, cast_expression
from greenlight.refresh.config import parse_config
from greenlight.refresh.tables import table_groups


@pytest.mark.parametrize(
    ("source", "target", "expr"),
    [
        ("numeric", "jsonb", 'to_jsonb("c")'),  # admin_config.value in the runbook
        ("text[]", "jsonb", 'to_jsonb("c")'),  # eval_runbooks.condition_positives in the runbook
        ("integer", "bigint", '"c"::bigint'),
        ("smallint[]", "integer[]", '"c"::integer[]'),
        ("json", "jsonb", '"c"::jsonb'),
        ("character varying(50)", "text", '"c"::text'),
        ("character varying(50)", "character varying(80)", '"c"::character varying(80)'),
        ("numeric(10,2)", "numeric(12,3)", '"c"::numeric(12,3)'),
        ("integer", "numeric", '"c"::numeric'),
        ("uuid", "text", '"c"::text'),
        ("date", "timestamp without time zone", '"c"::timestamp without time zone'),
        ("jsonb", "jsonb", '"c"'),
    ],
)
def test_safe_casts(source, target, expr):
    assert cast_expression("c", source, target)[0] == expr


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("bigint", "integer"),  # narrowing
        ("text", "character varying(3)"),  # truncation
        ("character varying(80)", "character varying(50)"),
        ("numeric(12,3)", "numeric(10,2)"),
        ("text", "integer"),  # parsing may fail or guess
        ("jsonb", "numeric"),
        ("timestamp without time zone", "timestamp with time zone"),  # depends on the session TimeZone
        ("text[]", "text"),
        ("integer", "numeric(5,0)"),
    ],
)
def test_unsafe_casts_name_table_column_and_both_types(source, target):
    with pytest.raises(NoSafeCastError) as info:
        cast_expression("value", source, target, table="public.admin_config")
    assert f"public.admin_config.value: no safe cast from {source} (prod) to {target} (staging)" in str(info.value)


def test_fk_groups_are_ordered_parents_first():
    edges = [("public.books", "public.authors"), ("public.book_images", "public.books")]
    tables = ["public.book_images", "public.books", "public.users", "public.authors"]
    assert table_groups(tables, edges) == [
        ["public.authors", "public.books", "public.book_images"],
        ["public.users"],
    ]


def base(**postgres):
    return {"postgres": {"source_conn": "app_db", "target_conn": "app_staging_db", **postgres}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (base(colour="red"), "postgres: unknown key 'colour'"),
        (base(mask={"users.email": "sha1"}), "postgres.mask.users.email: input should be 'hash'"),
        (base(mask={"email": "hash"}), "postgres.mask: 'email': expected table.column"),
        (base(tables=["books; drop"]), "postgres.tables[0]: 'books; drop' is not a table name"),
        ({"postgres": {"source_conn": "db", "target_conn": "db"}}, "same connection as source_conn"),
        ({"postgres": {"source_conn": "db", "target_conn": "prod_db"}}, "target_conn 'prod_db' is named like prod"),
        (
            {"buckets": [{"source": "s3://images/", "target": "s3://images-prod/"}]},
            "buckets[0].target: bucket 'images-prod' is named like prod",
        ),
        (
            {"buckets": [{"source": "s3://images/", "target": "s3://images/"}]},
            "bucket 'images' is a source bucket",
        ),
        ({"buckets": [{"source": "images", "target": "s3://images-staging/"}]}, "buckets[0].source: "),
        ({}, "nothing to refresh"),
        (base(workers=0), "postgres.workers: input should be greater than or equal to 1"),
        ({**base(), "migrations": {"command": "x", "http": {"conn_id": "api"}}}, "exactly one of"),
        ({**base(), "migrations": {"http": {"url": "http://h/"}}}, "migrations.http: 'url' is not supported"),
        (base(checksum={"users": ["id; drop"]}), "postgres.checksum: users: 'id; drop' is not a column name"),
        (base(checksum=["users x"]), "postgres.checksum: 'users x' is not a table name"),
    ],
)
def test_config_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, path="staging_refresh.yaml")
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_packaged_config_is_valid():
    from greenlight.refresh.config import load_config

    config = load_config()
    assert config.postgres.masks_for("public.users") == {"email": "email"}
    assert [b.name for b in config.buckets] == ["images"]

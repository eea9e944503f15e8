"""The shape of ``staging_refresh.yaml``: strict pydantic models, the one judge of every key and value.

Parsed like every greenlight config file (:mod:`greenlight.yamlfile`, then
:mod:`greenlight.configmodel`): ``extra="forbid"`` and no type coercion; every problem becomes one
:class:`~greenlight.errors.ConfigError` (exit 2) naming the file and the key path
(``postgres.tables[2]: …``, ``postgres: unknown key 'colour'``). The rules of one section (the
staging connection is not the prod one nor named like prod, exactly one way to migrate) are
validators here; what needs several sections at once is checked by
:mod:`greenlight.refresh.config` on every load.

:func:`normalize` returns a valid document as plain data: only the keys the file sets, each value
as validated (bucket URIs in their canonical ``s3://bucket/prefix/`` form). The engine's objects in
:mod:`greenlight.refresh.config` are built from it and supply the defaults of the keys left out;
the defaults here must equal theirs (a test checks). The normalized document is what the
validated-document cache (:mod:`greenlight.doccache`) keeps, so a CLI run whose file has not
changed skips importing this module and pydantic; this file's source is part of the cache key.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, ValidationInfo, field_validator, model_validator

from greenlight.configmodel import StrictModel, validate
from greenlight.errors import ConfigError
from greenlight.refresh.config import TABLE_NAME, looks_like_prod
from greenlight.storage.s3 import parse_s3_uri

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
MaskRule = Literal["hash", "email", "null", "redact"]


# --------------------------------------------------------------------------------- value checks
def _table(value: str) -> str:
    if not TABLE_NAME.match(value):
        raise ValueError(f"{value!r} is not a table name (table or schema.table)")
    return value


def _schema(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{value!r} is not a schema name")
    return value


def _once_each(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{v!r} is listed more than once")
        seen.add(v)
    return values


def _some_schema(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("name at least one schema")
    return values


def _conn_id(value: str) -> str:
    if not _CONN_ID.match(value):
        raise ValueError(f"{value!r} is not a connection id")
    return value


def _checksum(value: Any) -> list[str] | dict[str, list[str]]:
    """A list of tables (every copied column) or a mapping table -> columns."""
    if not isinstance(value, list | dict):
        raise ValueError(f"expected a list of tables or a mapping table -> columns, got {value!r}")
    for t in value:
        if not isinstance(t, str) or not TABLE_NAME.match(t):
            raise ValueError(f"{t!r} is not a table name (table or schema.table)")
    if isinstance(value, list):
        return list(value)
    for t, cols in value.items():
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise ValueError(f"{t}: expected a list of column names, got {cols!r}")
        for c in cols:
            if not _IDENT.match(c):
                raise ValueError(f"{t}: {c!r} is not a column name")
    return {t: list(cols) for t, cols in value.items()}


def _command(value: Any) -> list[str] | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return list(value)
    raise ValueError(f"expected a string or a list of strings, got {value!r}")


TableName = Annotated[str, AfterValidator(_table)]
TableList = Annotated[list[TableName], AfterValidator(_once_each)]
SchemaList = Annotated[list[Annotated[str, AfterValidator(_schema)]], AfterValidator(_some_schema)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Seconds = Annotated[float, Field(gt=0)]


# ---------------------------------------------------------------------------------------- sections
class BucketModel(StrictModel):
    """One ``buckets:`` entry (:class:`greenlight.refresh.config.BucketMapping`)."""

    source: str
    target: str
    name: str = ""
    max_delete_fraction: Fraction = 0.10
    max_delete_count: Annotated[int, Field(ge=0)] = 1000

    @field_validator("source", "target")
    @classmethod
    def _uri(cls, value: str, info: ValidationInfo) -> str:
        try:
            return str(parse_s3_uri(value, what=info.field_name))
        except ConfigError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None


class PostgresModel(StrictModel):
    """``postgres:`` (:class:`greenlight.refresh.config.PostgresSection`)."""

    source_conn: str
    target_conn: str
    schemas: SchemaList = ["public"]
    tables: TableList | None = None
    skip_tables: TableList = []
    allow_empty: TableList = []
    mask: dict[str, MaskRule] = {}
    copy_format: Literal["auto", "binary", "text"] = "auto"
    workers: Annotated[int, Field(ge=1, le=32)] = 2
    reader: Literal["auto", "psql", "python"] = "auto"
    psql: str | None = None
    checksum: Annotated[list[str] | dict[str, list[str]], PlainValidator(_checksum)] = []

    @field_validator("mask")
    @classmethod
    def _mask_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            parts = key.split(".")
            if len(parts) not in (2, 3) or not all(_IDENT.match(p) for p in parts):
                raise ValueError(f"{key!r}: expected table.column or schema.table.column")
        return value

    @model_validator(mode="after")
    def _connections(self) -> PostgresModel:
        if self.source_conn == self.target_conn:
            raise ValueError(f"target_conn is the same connection as source_conn ({self.source_conn!r})")
        if looks_like_prod(self.target_conn):
            raise ValueError(f"target_conn {self.target_conn!r} is named like prod; a refresh never writes to prod")
        return self


class HttpMigrationModel(StrictModel):
    """``migrations.http:`` (:class:`greenlight.refresh.config.HttpMigration`)."""

    conn_id: Annotated[str, AfterValidator(_conn_id)]
    endpoint: str = ""
    method: Literal["POST", "PUT", "GET"] = "POST"
    timeout_s: Seconds = 300.0
    expect_status: list[int] = [200, 201, 202, 204]

    @model_validator(mode="before")
    @classmethod
    def _no_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data:
            raise ValueError(
                "'url' is not supported: name an Airflow HTTP connection in 'conn_id' (its host is the base "
                "URL, credentials stay in the connection) and the path in 'endpoint'"
            )
        return data


class MigrationsModel(StrictModel):
    """``migrations:`` (:class:`greenlight.refresh.config.Migrations`)."""

    command: Annotated[list[str] | str | None, PlainValidator(_command)] = None
    cwd: str | None = None
    http: HttpMigrationModel | None = None
    timeout_s: Seconds = 900.0
    alembic_script_location: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MigrationsModel:
        if (self.command is None) == (self.http is None):
            raise ValueError("give exactly one of 'command' or 'http'")
        return self


class SqlCheckModel(StrictModel):
    """One ``health.sql:`` entry (:class:`greenlight.refresh.config.SqlCheck`)."""

    name: str
    sql: str
    min: float | None = None


class HealthModel(StrictModel):
    """``health:`` (:class:`greenlight.refresh.config.Health`)."""

    url: str | None = None
    expect_status: int = 200
    timeout_s: Seconds = 30.0
    sql: list[SqlCheckModel] = []


class RefreshFile(StrictModel):
    """The whole ``staging_refresh.yaml`` (:class:`greenlight.refresh.config.RefreshConfig`)."""

    buckets: list[BucketModel] = []
    aws_conn: str = "aws_default"
    source_aws_conn: str | None = None
    postgres: PostgresModel | None = None
    migrations: MigrationsModel | None = None
    health: HealthModel | None = None
    manifest_uri: str | None = None
    lease_uri: str | None = None
    workers: Annotated[int, Field(ge=1, le=256)] = 32


_MAPPING = "{where}: expected a mapping, got {value!r}"
MESSAGES = {
    "": "{file}: expected a mapping at the top level, got {value!r}",
    "buckets": "{where}: expected a list of mappings with 'source' and 'target', got {value!r}",
    "buckets[]": "{where}: expected a mapping with 'source' and 'target', got {value!r}",
    "postgres": _MAPPING,
    "migrations": _MAPPING,
    "http": _MAPPING,
    "health": _MAPPING,
    "sql[]": "{where}: expected a mapping with 'name' and 'sql', got {value!r}",
}


def normalize(raw: Any, *, file: str) -> dict[str, Any]:
    """Validate a parsed ``staging_refresh.yaml`` (one :class:`ConfigError` that starts with
    ``file`` and names every key at fault) and return it as plain data: the keys it sets, with
    their validated values."""
    try:
        model = validate(RefreshFile, raw, file=file, messages=MESSAGES)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(f"{file}:") else f"{file}: {text}") from None
    return model.model_dump(exclude_unset=True)

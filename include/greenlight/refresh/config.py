"""``staging_refresh.yaml``: what the prod → staging refresh copies, and how it checks the result.

Parsed like every greenlight config file (:mod:`greenlight.yamlfile`, then
:mod:`greenlight.configmodel`): pydantic v2 models with ``extra="forbid"`` and no type coercion;
every problem becomes one :class:`ConfigError` (exit 2) naming the file and the key path
(``postgres.tables[2]: …``, ``postgres: unknown key 'colour'``). The refusal rules (a target that
is a source or is named like prod, a manifest inside a bucket target, …) are validators of the
same models. Only connection *ids* appear here: credentials come from Airflow connections
(``AIRFLOW_CONN_<ID>`` for the CLI).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from greenlight.configmodel import StrictModel, validate
from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.promotion.config import DEFAULT_MANIFEST_PREFIX
from greenlight.storage.s3 import S3Uri, parse_s3_uri
from greenlight.yamlfile import read_yaml

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "staging_refresh.yaml"
CONFIG_ENV = "GREENLIGHT_REFRESH_CONFIG"

#: A name that says "prod": refused as a refresh *target* (bucket, database, connection id).
PROD_NAME = re.compile(r"(^|[^a-z0-9])(prod|production|prd)([^a-z0-9]|$)", re.IGNORECASE)
#: Tables never copied: staging keeps its own schema version (it may be migrated ahead of prod).
ALWAYS_SKIPPED = {"alembic_version": "schema version table: staging keeps its own (it may be ahead of prod)"}

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
MaskRule = Literal["hash", "email", "null", "redact"]


def looks_like_prod(name: str | None) -> bool:
    return bool(name) and bool(PROD_NAME.search(name))


# --------------------------------------------------------------------------------- value checks
def _table(value: str) -> str:
    if not _TABLE.match(value):
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
        if not isinstance(t, str) or not _TABLE.match(t):
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
class BucketMapping(StrictModel):
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

    @property
    def source_uri(self) -> S3Uri:
        return parse_s3_uri(self.source)

    @property
    def target_uri(self) -> S3Uri:
        return parse_s3_uri(self.target)

    @property
    def label(self) -> str:
        return self.name or self.source


class PostgresSection(StrictModel):
    source_conn: str
    target_conn: str
    schemas: SchemaList = ["public"]
    tables: TableList | None = None  # default: every table of the schemas in prod
    skip_tables: TableList = []
    allow_empty: TableList = []
    mask: dict[str, MaskRule] = {}  # table.column or schema.table.column -> rule
    copy_format: Literal["auto", "binary", "text"] = "auto"
    workers: Annotated[int, Field(ge=1, le=32)] = 2
    # What reads prod: psql (a child process per table, in C: faster), python (greenlight's own
    # connection), or auto (psql when ``psql`` is found). ``psql``: its path, default ``psql`` on PATH.
    reader: Literal["auto", "psql", "python"] = "auto"
    psql: str | None = None
    # Verified by checksum after the copy (besides row counts): a list of tables (every copied
    # column) or a mapping table -> columns (e.g. the key columns); masked columns are left out.
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
    def _connections(self) -> PostgresSection:
        if self.source_conn == self.target_conn:
            raise ValueError(f"target_conn is the same connection as source_conn ({self.source_conn!r})")
        if looks_like_prod(self.target_conn):
            raise ValueError(f"target_conn {self.target_conn!r} is named like prod; a refresh never writes to prod")
        return self

    def qualify(self, table: str) -> str:
        return table if "." in table else f"{self.schemas[0]}.{table}"

    def checksum_for(self, table: str) -> list[str] | None:
        """Columns to checksum for a table (``[]`` = every copied column), None when not configured."""
        for t in self.checksum:
            if self.qualify(t) == table:
                return list(self.checksum[t]) if isinstance(self.checksum, dict) else []
        return None

    def masks_for(self, table: str) -> dict[str, str]:
        out = {}
        for key, rule in self.mask.items():
            parts = key.split(".")
            owner = ".".join(parts[:-1])
            if self.qualify(owner) == table:
                out[parts[-1]] = rule
        return out


class HttpMigration(StrictModel):
    """The app's migrate endpoint, called through the http provider's ``HttpHook``: ``conn_id`` is an
    Airflow HTTP connection (the CLI: ``AIRFLOW_CONN_<ID>``) holding the base URL and credentials."""

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


class Migrations(StrictModel):
    # run with the staging connection in its environment
    command: Annotated[list[str] | str | None, PlainValidator(_command)] = None
    cwd: str | None = None
    http: HttpMigration | None = None
    timeout_s: Seconds = 900.0
    alembic_script_location: str | None = None  # lets the run say whether staging is *ahead* of prod

    @model_validator(mode="after")
    def _exactly_one(self) -> Migrations:
        if (self.command is None) == (self.http is None):
            raise ValueError("give exactly one of 'command' or 'http'")
        return self


class SqlCheck(StrictModel):
    name: str
    sql: str
    # The first column of the first row must be true (or, with ``min``, a number >= min).
    min: float | None = None


class Health(StrictModel):
    url: str | None = None
    expect_status: int = 200
    timeout_s: Seconds = 30.0
    sql: list[SqlCheck] = []


class RefreshConfig(StrictModel):
    buckets: list[BucketMapping] = []
    aws_conn: str = "aws_default"
    # Set when the staging identity cannot read prod: objects are then streamed GET -> PUT through
    # this (prod) connection instead of copied server-side.
    source_aws_conn: str | None = None
    postgres: PostgresSection | None = None
    migrations: Migrations | None = None
    health: Health | None = None
    manifest_uri: str | None = None
    # Where the leases of the bucket targets (and of the staging database) live; see lease_root().
    lease_uri: str | None = None
    workers: Annotated[int, Field(ge=1, le=256)] = 32
    _path: str = PrivateAttr("")

    @property
    def path(self) -> str:
        """The file this config was read from (not a key of the file)."""
        return self._path

    @model_validator(mode="after")
    def _rules(self) -> RefreshConfig:
        if not self.buckets and self.postgres is None:
            raise ValueError("nothing to refresh: configure 'buckets' and/or 'postgres'")
        sources = {b.source_uri.bucket for b in self.buckets}
        for i, b in enumerate(self.buckets):
            t = b.target_uri
            if t.bucket in sources:
                raise ValueError(
                    f"buckets[{i}].target: bucket {t.bucket!r} is a source bucket; refusing to write to it"
                )
            if looks_like_prod(t.bucket):
                raise ValueError(f"buckets[{i}].target: bucket {t.bucket!r} is named like prod")
        labels = [b.label for b in self.buckets]
        if len(set(labels)) != len(labels):
            twice = next(label for label in labels if labels.count(label) > 1)
            raise ValueError(f"buckets: the mapping {twice!r} is listed more than once")
        if self.manifest_uri and self.manifest_uri.startswith("s3://"):
            try:
                m = parse_s3_uri(self.manifest_uri, what="manifest_uri")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if m.bucket in sources:
                raise ValueError("manifest_uri: in a source bucket; the refresh never writes to prod")
            for b in self.buckets:
                if b.target_uri.contains(m) or m.contains(b.target_uri):
                    raise ValueError(f"manifest_uri: overlaps bucket target {b.target}; the sync would delete it")
        if self.lease_uri is not None:
            try:
                lease = parse_s3_uri(self.lease_uri, what="lease_uri")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if lease.bucket in sources:
                raise ValueError("lease_uri: in a source bucket; the refresh never writes to prod")
        for i, b in enumerate(self.buckets):
            root = self.lease_root(b)
            clash = next((t.target for t in self.buckets if _overlap(root, t.target_uri)), None) if root else None
            if root is None or clash:
                where = "lease_uri" if self.lease_uri else f"buckets[{i}].target"
                raise ValueError(
                    f"{where}: no place for the lease of {b.target}"
                    + (f" ({root} overlaps bucket target {clash}; the sync would delete it)" if clash else "")
                    + "; set lease_uri to an s3:// prefix outside every target (the promotion config's "
                    "manifest_uri, when a promotion writes the same prefix)"
                )
        return self

    # ---------------------------------------------------------------------------- leases
    def lease_root(self, mapping: BucketMapping) -> S3Uri | None:
        """Where the lease of ``mapping``'s target lives: ``lease_uri``; else ``_greenlight/manifests/``
        in the target's bucket, where a promotion into that bucket keeps its leases by default (so
        the two share one lease per prefix), unless a target covers it; else an s3:// ``manifest_uri``."""
        if self.lease_uri:
            return parse_s3_uri(self.lease_uri)
        default = S3Uri(mapping.target_uri.bucket, DEFAULT_MANIFEST_PREFIX)
        if not any(_overlap(default, b.target_uri) for b in self.buckets):
            return default
        if self.manifest_uri and self.manifest_uri.startswith("s3://"):
            return parse_s3_uri(self.manifest_uri)
        return None

    def database_lease_root(self) -> S3Uri | None:
        """Where the staging database's lease lives: ``lease_uri``, an s3:// ``manifest_uri``, or the
        first bucket target's lease root; None (no lease) when the refresh has no S3 location at all."""
        if self.lease_uri:
            return parse_s3_uri(self.lease_uri)
        if self.manifest_uri and self.manifest_uri.startswith("s3://"):
            return parse_s3_uri(self.manifest_uri)
        return self.lease_root(self.buckets[0]) if self.buckets else None

    # ---------------------------------------------------------------------------- selection
    def names(self) -> list[str]:
        out = [b.label for b in self.buckets]
        if self.postgres:
            out += list(self.postgres.tables or [])
        return out

    def select(
        self, only: list[str] | None, known_tables: list[str] | None = None
    ) -> tuple[list[BucketMapping], set[str] | None]:
        """Split ``only`` into bucket mappings and tables; an unknown name is a :class:`ConfigError`.

        Returns (bucket mappings to sync, tables to copy or None for "all configured")."""
        if not only:
            return list(self.buckets), None
        buckets: list[BucketMapping] = []
        tables: set[str] = set()
        pg = self.postgres
        for item in only:
            match = [b for b in self.buckets if item in (b.name, b.source, b.target) or item + "/" == b.source]
            if match:
                buckets.extend(m for m in match if m not in buckets)
                continue
            if pg is not None and _TABLE.match(item):
                qualified = pg.qualify(item)
                if known_tables is None or qualified in known_tables:
                    tables.add(qualified)
                    continue
            known = ", ".join([b.label for b in self.buckets] + list(known_tables or []))
            raise ConfigError(f"only: {item!r} is neither a configured bucket mapping nor a table (known: {known})")
        return buckets, tables


def _overlap(a: S3Uri, b: S3Uri) -> bool:
    return a.contains(b) or b.contains(a)


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


def parse_config(raw: Any, *, path: str = "<config>") -> RefreshConfig:
    """Validate a parsed ``staging_refresh.yaml``; every problem is one :class:`ConfigError` naming
    ``path`` and the key path."""
    try:
        config = validate(RefreshConfig, raw, file=path, messages=MESSAGES)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(f"{path}:") else f"{path}: {text}") from None
    config._path = path
    return config


def load_config(path: str | os.PathLike | None = None) -> RefreshConfig:
    """Read and validate the refresh config (``$GREENLIGHT_REFRESH_CONFIG`` or the packaged one)."""
    resolved = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(resolved), path=str(resolved))

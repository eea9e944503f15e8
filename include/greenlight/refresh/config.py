"""``staging_refresh.yaml``: what the prod → staging refresh copies, and how it checks the result.

The file's shape is :mod:`greenlight.refresh.configschema` (strict pydantic models, imported only
when a document is validated): every problem becomes one :class:`ConfigError` (exit 2) naming the
file and the key path (``postgres.tables[2]: …``, ``postgres: unknown key 'colour'``). The objects
below are built from its normalized document, after the refusal rules that need several keys at
once (a bucket target that is a source or is named like prod, a manifest inside a bucket target,
no place for a lease), which run here on every load. Only connection *ids* appear in the file:
credentials come from Airflow connections (``AIRFLOW_CONN_<ID>`` for the CLI).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlight import doccache
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
#: A table as the config names it: ``table`` (in the first schema) or ``schema.table``.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def looks_like_prod(name: str | None) -> bool:
    return bool(name) and bool(PROD_NAME.search(name))


# ---------------------------------------------------------------------------------------- sections
# The defaults below are the engine's, for keys the file leaves out; the schema's must equal them
# (tests/unit/test_refresh_config_cache.py checks).
@dataclass(frozen=True)
class BucketMapping:
    source: str  # canonical s3://bucket/prefix/
    target: str
    name: str = ""
    max_delete_fraction: float = 0.10
    max_delete_count: int = 1000

    @property
    def source_uri(self) -> S3Uri:
        return parse_s3_uri(self.source)

    @property
    def target_uri(self) -> S3Uri:
        return parse_s3_uri(self.target)

    @property
    def label(self) -> str:
        return self.name or self.source


@dataclass(frozen=True)
class PostgresSection:
    source_conn: str
    target_conn: str
    schemas: list[str] = field(default_factory=lambda: ["public"])
    tables: list[str] | None = None  # default: every table of the schemas in prod
    skip_tables: list[str] = field(default_factory=list)
    allow_empty: list[str] = field(default_factory=list)
    mask: dict[str, str] = field(default_factory=dict)  # table.column or schema.table.column -> rule
    copy_format: str = "auto"  # auto, binary or text
    workers: int = 2
    # What reads prod: psql (a child process per table, in C: faster), python (greenlight's own
    # connection), or auto (psql when ``psql`` is found). ``psql``: its path, default ``psql`` on PATH.
    reader: str = "auto"
    psql: str | None = None
    # Verified by checksum after the copy (besides row counts): a list of tables (every copied
    # column) or a mapping table -> columns (e.g. the key columns); masked columns are left out.
    checksum: list[str] | dict[str, list[str]] = field(default_factory=list)

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


@dataclass(frozen=True)
class HttpMigration:
    """The app's migrate endpoint, called through the http provider's ``HttpHook``: ``conn_id`` is an
    Airflow HTTP connection (the CLI: ``AIRFLOW_CONN_<ID>``) holding the base URL and credentials."""

    conn_id: str
    endpoint: str = ""
    method: str = "POST"  # POST, PUT or GET
    timeout_s: float = 300.0
    expect_status: list[int] = field(default_factory=lambda: [200, 201, 202, 204])


@dataclass(frozen=True)
class Migrations:
    """Exactly one of ``command`` (run with the staging connection in its environment) or ``http``."""

    command: list[str] | str | None = None
    cwd: str | None = None
    http: HttpMigration | None = None
    timeout_s: float = 900.0
    alembic_script_location: str | None = None  # lets the run say whether staging is *ahead* of prod


@dataclass(frozen=True)
class SqlCheck:
    name: str
    sql: str
    # The first column of the first row must be true (or, with ``min``, a number >= min).
    min: float | None = None


@dataclass(frozen=True)
class Health:
    url: str | None = None
    expect_status: int = 200
    timeout_s: float = 30.0
    sql: list[SqlCheck] = field(default_factory=list)


@dataclass(frozen=True)
class RefreshConfig:
    buckets: list[BucketMapping] = field(default_factory=list)
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
    workers: int = 32
    path: str = ""  # the file this config was read from (not a key of the file)

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
            if pg is not None and TABLE_NAME.match(item):
                qualified = pg.qualify(item)
                if known_tables is None or qualified in known_tables:
                    tables.add(qualified)
                    continue
            known = ", ".join([b.label for b in self.buckets] + list(known_tables or []))
            raise ConfigError(f"only: {item!r} is neither a configured bucket mapping nor a table (known: {known})")
        return buckets, tables


def _overlap(a: S3Uri, b: S3Uri) -> bool:
    return a.contains(b) or b.contains(a)


# --------------------------------------------------------------------------- from file to objects
#: The modules whose source decides what a valid document is: part of the validated-document cache's
#: key (the schema uses this module's TABLE_NAME and looks_like_prod, and storage.s3's URI rules).
SCHEMA_SOURCES = (
    "greenlight.refresh.configschema",
    "greenlight.refresh.config",
    "greenlight.configmodel",
    "greenlight.storage.s3",
)


def validate_document(raw: Any, path: str) -> dict[str, Any]:
    """The schema's verdict on a parsed ``staging_refresh.yaml``: the normalized document (the keys
    it sets, values as validated), or a :class:`ConfigError` naming ``path`` and every key at fault."""
    # Local: the schema imports pydantic, ~0.13 s of CPU per CLI start (python -X importtime,
    # 2026-12-03); a run whose document is in the validated-document cache never needs it.
    from greenlight.refresh.configschema import normalize

    return normalize(raw, file=path)


def parse_config(raw: Any, *, path: str = "<config>") -> RefreshConfig:
    """Validate a parsed ``staging_refresh.yaml``; every problem is one :class:`ConfigError` naming
    ``path`` and the key path.

    The schema checks the shape and every value, unless the validated-document cache holds its
    verdict on this exact document and schema; the rules that need several keys at once
    (:func:`check_rules`) run here on every call. A document is cached only once both have passed.
    """
    return doccache.load_validated(
        raw,
        kind="staging_refresh.yaml",
        sources=SCHEMA_SOURCES,
        validate=lambda: validate_document(raw, path),
        build=lambda doc: build_config(doc, path),
    )


def build_config(doc: Mapping[str, Any], path: str) -> RefreshConfig:
    """The :class:`RefreshConfig` of a normalized document (:func:`validate_document`), after
    :func:`check_rules`. Keys the document leaves out take the defaults of the classes above."""
    top = {key: value for key, value in doc.items() if key not in ("buckets", "postgres", "migrations", "health")}
    config = RefreshConfig(
        buckets=[BucketMapping(**entry) for entry in doc.get("buckets") or ()],
        postgres=PostgresSection(**doc["postgres"]) if doc.get("postgres") is not None else None,
        migrations=_migrations(doc.get("migrations")),
        health=_health(doc.get("health")),
        path=path,
        **top,
    )
    check_rules(config)
    return config


def _migrations(doc: Mapping[str, Any] | None) -> Migrations | None:
    if doc is None:
        return None
    values = dict(doc)
    if values.get("http") is not None:
        values["http"] = HttpMigration(**values["http"])
    return Migrations(**values)


def _health(doc: Mapping[str, Any] | None) -> Health | None:
    if doc is None:
        return None
    values = dict(doc)
    if "sql" in values:
        values["sql"] = [SqlCheck(**check) for check in values["sql"]]
    return Health(**values)


def check_rules(config: RefreshConfig) -> None:
    """The refusals that need several keys at once; a :class:`ConfigError` naming the file and the key."""
    path = config.path
    if not config.buckets and config.postgres is None:
        raise ConfigError(f"{path}: nothing to refresh: configure 'buckets' and/or 'postgres'")
    sources = {b.source_uri.bucket for b in config.buckets}
    for i, b in enumerate(config.buckets):
        t = b.target_uri
        if t.bucket in sources:
            raise ConfigError(
                f"{path}: buckets[{i}].target: bucket {t.bucket!r} is a source bucket; refusing to write to it"
            )
        if looks_like_prod(t.bucket):
            raise ConfigError(f"{path}: buckets[{i}].target: bucket {t.bucket!r} is named like prod")
    labels = [b.label for b in config.buckets]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise ConfigError(f"{path}: buckets: the mapping {twice!r} is listed more than once")
    if config.manifest_uri and config.manifest_uri.startswith("s3://"):
        try:
            m = parse_s3_uri(config.manifest_uri, what="manifest_uri")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if m.bucket in sources:
            raise ConfigError(f"{path}: manifest_uri: in a source bucket; the refresh never writes to prod")
        for b in config.buckets:
            if b.target_uri.contains(m) or m.contains(b.target_uri):
                raise ConfigError(f"{path}: manifest_uri: overlaps bucket target {b.target}; the sync would delete it")
    if config.lease_uri is not None:
        try:
            lease = parse_s3_uri(config.lease_uri, what="lease_uri")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if lease.bucket in sources:
            raise ConfigError(f"{path}: lease_uri: in a source bucket; the refresh never writes to prod")
    for i, b in enumerate(config.buckets):
        root = config.lease_root(b)
        clash = next((t.target for t in config.buckets if _overlap(root, t.target_uri)), None) if root else None
        if root is None or clash:
            where = "lease_uri" if config.lease_uri else f"buckets[{i}].target"
            raise ConfigError(
                f"{path}: {where}: no place for the lease of {b.target}"
                + (f" ({root} overlaps bucket target {clash}; the sync would delete it)" if clash else "")
                + "; set lease_uri to an s3:// prefix outside every target (the promotion config's "
                "manifest_uri, when a promotion writes the same prefix)"
            )


def load_config(path: str | os.PathLike | None = None) -> RefreshConfig:
    """Read and validate the refresh config (``$GREENLIGHT_REFRESH_CONFIG`` or the packaged one)."""
    resolved = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(resolved), path=str(resolved))

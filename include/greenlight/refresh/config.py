"""``staging_refresh.yaml``: what the prod → staging refresh copies, and how it checks the result.

Validated by hand into frozen dataclasses (no pydantic: its import and model build were a fifth of
the CLI's start-up, which the refresh pays on every run); unknown keys are refused and every
problem becomes one :class:`ConfigError` naming the key path (``postgres.mask.users.email: …``).
Only connection *ids* appear here: credentials come from Airflow connections (``AIRFLOW_CONN_<ID>``
for the CLI).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR
from greenlight.storage.s3 import S3Uri, parse_s3_uri

DEFAULT_CONFIG_PATH = INCLUDE_DIR / "config" / "staging_refresh.yaml"
CONFIG_ENV = "GREENLIGHT_REFRESH_CONFIG"

#: A name that says "prod": refused as a refresh *target* (bucket, database, connection id).
PROD_NAME = re.compile(r"(^|[^a-z0-9])(prod|production|prd)([^a-z0-9]|$)", re.IGNORECASE)
#: Tables never copied: staging keeps its own schema version (it may be migrated ahead of prod).
ALWAYS_SKIPPED = {"alembic_version": "schema version table: staging keeps its own (it may be ahead of prod)"}

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
MASK_RULES = ("hash", "email", "null", "redact")
COPY_FORMATS = ("auto", "binary", "text")
HTTP_METHODS = ("POST", "PUT", "GET")


def looks_like_prod(name: str | None) -> bool:
    return bool(name) and bool(PROD_NAME.search(name))


class _Invalid(Exception):
    """One problem at one key path (collected, then reported together)."""


class _Model:
    @classmethod
    def model_construct(cls, **values):
        """Build without validation (tests reach past the loader with it)."""
        return cls(**values)


def _one_of(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) for c in choices]
    return "Input should be " + (", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0])


class _Reader:
    """Reads typed values out of a mapping, recording problems by key path instead of stopping."""

    def __init__(self, problems: list[str]):
        self.problems = problems

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}" if where else message)

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(where, "Input should be a valid dictionary")
            return None
        for key in value:
            if key not in allowed:
                self.fail(f"{where}.{key}" if where else str(key), "unknown key")
        return value

    def get(self, doc: dict[str, Any], key: str, where: str, kind: str, default: Any = ..., **rule) -> Any:
        path = f"{where}.{key}" if where else key
        if key not in doc:
            if default is ...:
                self.fail(path, "Field required")
            return None if default is ... else default
        value = doc[key]
        try:
            return _convert(value, kind, rule)
        except _Invalid as exc:
            self.fail(path, str(exc))
            return None if default is ... else default


def _convert(value: Any, kind: str, rule: dict[str, Any]) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise _Invalid("Input should be a valid string")
    elif kind == "opt_str":
        if value is not None and not isinstance(value, str):
            raise _Invalid("Input should be a valid string")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("Input should be a valid integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid("Input should be a valid number")
        value = float(value)
    elif kind == "opt_float":
        if value is not None:
            return _convert(value, "float", rule)
    elif kind in ("str_list", "opt_str_list"):
        if value is None and kind == "opt_str_list":
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Invalid("Input should be a valid list of strings")
        value = list(value)
    elif kind == "int_list":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise _Invalid("Input should be a valid list of integers")
        value = list(value)
    elif kind == "choice":
        if value not in rule["choices"]:
            raise _Invalid(_one_of(rule["choices"]))
        return value
    else:  # pragma: no cover - a programming error
        raise AssertionError(kind)
    if "ge" in rule and value < rule["ge"]:
        raise _Invalid(f"Input should be greater than or equal to {rule['ge']}")
    if "gt" in rule and value <= rule["gt"]:
        raise _Invalid(f"Input should be greater than {rule['gt']}")
    if "le" in rule and value > rule["le"]:
        raise _Invalid(f"Input should be less than or equal to {rule['le']}")
    return value


# ---------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class BucketMapping(_Model):
    source: str
    target: str
    name: str = ""
    max_delete_fraction: float = 0.10
    max_delete_count: int = 1000

    @classmethod
    def read(cls, raw: Any, where: str, r: _Reader) -> BucketMapping | None:
        doc = r.mapping(raw, where, tuple(f.name for f in fields(cls)))
        if doc is None:
            return None
        before = len(r.problems)
        values: dict[str, Any] = {}
        for key in ("source", "target"):
            value = r.get(doc, key, where, "str")
            if value is not None:
                try:
                    value = str(parse_s3_uri(value, what=key))
                except ConfigError as exc:
                    r.fail(f"{where}.{key}", str(exc).split(": ", 1)[1])
            values[key] = value
        values["name"] = r.get(doc, "name", where, "str", "")
        values["max_delete_fraction"] = r.get(doc, "max_delete_fraction", where, "float", 0.10, ge=0, le=1)
        values["max_delete_count"] = r.get(doc, "max_delete_count", where, "int", 1000, ge=0)
        return cls(**values) if len(r.problems) == before else None

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
class PostgresSection(_Model):
    source_conn: str
    target_conn: str
    schemas: list[str] = field(default_factory=lambda: ["public"])
    tables: list[str] | None = None  # default: every table of the schemas in prod
    skip_tables: list[str] = field(default_factory=list)
    allow_empty: list[str] = field(default_factory=list)
    mask: dict[str, str] = field(default_factory=dict)
    copy_format: str = "auto"
    workers: int = 2
    # Verified by checksum after the copy (besides row counts): a list of tables (every copied
    # column) or a mapping table -> columns (e.g. the key columns); masked columns are left out.
    checksum: list[str] | dict[str, list[str]] = field(default_factory=list)

    @classmethod
    def read(cls, raw: Any, where: str, r: _Reader) -> PostgresSection | None:
        doc = r.mapping(raw, where, tuple(f.name for f in fields(cls)))
        if doc is None:
            return None
        before = len(r.problems)
        v: dict[str, Any] = {
            "source_conn": r.get(doc, "source_conn", where, "str"),
            "target_conn": r.get(doc, "target_conn", where, "str"),
            "schemas": r.get(doc, "schemas", where, "str_list", ["public"]),
            "tables": r.get(doc, "tables", where, "opt_str_list", None),
            "skip_tables": r.get(doc, "skip_tables", where, "str_list", []),
            "allow_empty": r.get(doc, "allow_empty", where, "str_list", []),
            "copy_format": r.get(doc, "copy_format", where, "choice", "auto", choices=COPY_FORMATS),
            "workers": r.get(doc, "workers", where, "int", 2, ge=1, le=32),
        }
        if not v["schemas"] and "schemas" in doc and len(r.problems) == before:
            r.fail(f"{where}.schemas", "name at least one schema")
        for s in v["schemas"] or ():
            if not _IDENT.match(s):
                r.fail(f"{where}.schemas", f"{s!r} is not a schema name")
        for key in ("tables", "skip_tables", "allow_empty"):
            names = v[key] or []
            bad = [t for t in names if not _TABLE.match(t)]
            if bad:
                r.fail(f"{where}.{key}", f"{bad[0]!r} is not a table name (table or schema.table)")
            elif len(set(names)) != len(names):
                r.fail(f"{where}.{key}", "a table is listed more than once")
        v["mask"] = cls._read_mask(doc.get("mask", {}), f"{where}.mask", r)
        v["checksum"] = cls._read_checksum(doc.get("checksum", []), f"{where}.checksum", r)
        if len(r.problems) != before:
            return None
        if v["source_conn"] == v["target_conn"]:
            r.fail(where, f"target_conn is the same connection as source_conn ({v['source_conn']!r})")
        elif looks_like_prod(v["target_conn"]):
            r.fail(where, f"target_conn {v['target_conn']!r} is named like prod; a refresh never writes to prod")
        return cls(**v) if len(r.problems) == before else None

    @staticmethod
    def _read_mask(raw: Any, where: str, r: _Reader) -> dict[str, str]:
        if not isinstance(raw, dict):
            r.fail(where, "Input should be a valid dictionary")
            return {}
        for key, rule in raw.items():
            if rule not in MASK_RULES:
                r.fail(f"{where}.{key}", _one_of(MASK_RULES))
        for key in raw:
            parts = str(key).split(".")
            if len(parts) not in (2, 3) or not all(_IDENT.match(p) for p in parts):
                r.fail(where, f"{key!r}: expected table.column or schema.table.column")
                break
        return dict(raw)

    @staticmethod
    def _read_checksum(raw: Any, where: str, r: _Reader) -> list[str] | dict[str, list[str]]:
        if isinstance(raw, list):
            tables, columns = raw, {}
        elif isinstance(raw, dict):
            tables, columns = list(raw), raw
        else:
            r.fail(where, "Input should be a list of tables or a mapping table -> columns")
            return []
        for t in tables:
            if not isinstance(t, str) or not _TABLE.match(t):
                r.fail(where, f"{t!r} is not a table name (table or schema.table)")
                return []
        for t, cols in columns.items():
            if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
                r.fail(f"{where}.{t}", "Input should be a valid list of strings")
                return []
            for c in cols:
                if not _IDENT.match(c):
                    r.fail(where, f"{t}: {c!r} is not a column name")
                    return []
        return {t: list(c) for t, c in columns.items()} if isinstance(raw, dict) else list(raw)

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
class HttpMigration(_Model):
    """The app's migrate endpoint, called through the http provider's ``HttpHook``: ``conn_id`` is an
    Airflow HTTP connection (the CLI: ``AIRFLOW_CONN_<ID>``) holding the base URL and credentials."""

    conn_id: str
    endpoint: str = ""
    method: str = "POST"
    timeout_s: float = 300
    expect_status: list[int] = field(default_factory=lambda: [200, 201, 202, 204])

    @classmethod
    def read(cls, raw: Any, where: str, r: _Reader) -> HttpMigration | None:
        if isinstance(raw, dict) and "url" in raw:
            r.fail(
                where,
                "'url' is not supported: name an Airflow HTTP connection in 'conn_id' (its host is the base "
                "URL, credentials stay in the connection) and the path in 'endpoint'",
            )
            return None
        doc = r.mapping(raw, where, tuple(f.name for f in fields(cls)))
        if doc is None:
            return None
        before = len(r.problems)
        v = {
            "conn_id": r.get(doc, "conn_id", where, "str"),
            "endpoint": r.get(doc, "endpoint", where, "str", ""),
            "method": r.get(doc, "method", where, "choice", "POST", choices=HTTP_METHODS),
            "timeout_s": r.get(doc, "timeout_s", where, "float", 300.0, gt=0),
            "expect_status": r.get(doc, "expect_status", where, "int_list", [200, 201, 202, 204]),
        }
        if v["conn_id"] is not None and not _CONN_ID.match(v["conn_id"]):
            r.fail(f"{where}.conn_id", f"{v['conn_id']!r} is not a connection id")
        return cls(**v) if len(r.problems) == before else None


@dataclass(frozen=True)
class Migrations(_Model):
    command: list[str] | str | None = None  # run with the staging connection in its environment
    cwd: str | None = None
    http: HttpMigration | None = None
    timeout_s: float = 900
    alembic_script_location: str | None = None  # lets the run say whether staging is *ahead* of prod

    @classmethod
    def read(cls, raw: Any, where: str, r: _Reader) -> Migrations | None:
        doc = r.mapping(raw, where, tuple(f.name for f in fields(cls)))
        if doc is None:
            return None
        before = len(r.problems)
        command = doc.get("command")
        if command is not None and not (
            isinstance(command, str) or (isinstance(command, list) and all(isinstance(c, str) for c in command))
        ):
            r.fail(f"{where}.command", "Input should be a string or a list of strings")
        v = {
            "command": command,
            "cwd": r.get(doc, "cwd", where, "opt_str", None),
            "http": HttpMigration.read(doc["http"], f"{where}.http", r) if doc.get("http") is not None else None,
            "timeout_s": r.get(doc, "timeout_s", where, "float", 900.0, gt=0),
            "alembic_script_location": r.get(doc, "alembic_script_location", where, "opt_str", None),
        }
        if len(r.problems) != before:
            return None
        if (v["command"] is None) == (v["http"] is None):
            r.fail(where, "give exactly one of 'command' or 'http'")
            return None
        return cls(**v)


@dataclass(frozen=True)
class SqlCheck(_Model):
    name: str
    sql: str
    # The first column of the first row must be true (or, with ``min``, a number >= min).
    min: float | None = None


@dataclass(frozen=True)
class Health(_Model):
    url: str | None = None
    expect_status: int = 200
    timeout_s: float = 30
    sql: list[SqlCheck] = field(default_factory=list)

    @classmethod
    def read(cls, raw: Any, where: str, r: _Reader) -> Health | None:
        doc = r.mapping(raw, where, tuple(f.name for f in fields(cls)))
        if doc is None:
            return None
        before = len(r.problems)
        checks = []
        raw_checks = doc.get("sql", [])
        if not isinstance(raw_checks, list):
            r.fail(f"{where}.sql", "Input should be a valid list")
            raw_checks = []
        for i, item in enumerate(raw_checks):
            at = f"{where}.sql[{i}]"
            c = r.mapping(item, at, ("name", "sql", "min"))
            if c is not None:
                checks.append(
                    SqlCheck(
                        name=r.get(c, "name", at, "str"),
                        sql=r.get(c, "sql", at, "str"),
                        min=r.get(c, "min", at, "opt_float", None),
                    )
                )
        v = {
            "url": r.get(doc, "url", where, "opt_str", None),
            "expect_status": r.get(doc, "expect_status", where, "int", 200),
            "timeout_s": r.get(doc, "timeout_s", where, "float", 30.0, gt=0),
            "sql": checks,
        }
        return cls(**v) if len(r.problems) == before else None


@dataclass(frozen=True)
class RefreshConfig(_Model):
    buckets: list[BucketMapping] = field(default_factory=list)
    aws_conn: str = "aws_default"
    # Set when the staging identity cannot read prod: objects are then streamed GET -> PUT through
    # this (prod) connection instead of copied server-side.
    source_aws_conn: str | None = None
    postgres: PostgresSection | None = None
    migrations: Migrations | None = None
    health: Health | None = None
    manifest_uri: str | None = None
    workers: int = 32
    path: str = ""

    @classmethod
    def read(cls, doc: dict[str, Any], r: _Reader) -> RefreshConfig | None:
        r.mapping(doc, "", tuple(f.name for f in fields(cls) if f.name != "path"))
        raw_buckets = doc.get("buckets", [])
        if not isinstance(raw_buckets, list):
            r.fail("buckets", "Input should be a valid list")
            raw_buckets = []
        v: dict[str, Any] = {
            "buckets": [BucketMapping.read(b, f"buckets[{i}]", r) for i, b in enumerate(raw_buckets)],
            "aws_conn": r.get(doc, "aws_conn", "", "str", "aws_default"),
            "source_aws_conn": r.get(doc, "source_aws_conn", "", "opt_str", None),
            "postgres": PostgresSection.read(doc["postgres"], "postgres", r) if doc.get("postgres") else None,
            "migrations": Migrations.read(doc["migrations"], "migrations", r) if doc.get("migrations") else None,
            "health": Health.read(doc["health"], "health", r) if doc.get("health") else None,
            "manifest_uri": r.get(doc, "manifest_uri", "", "opt_str", None),
            "workers": r.get(doc, "workers", "", "int", 32, ge=1, le=256),
        }
        if r.problems:
            return None
        config = cls(**v)
        config._rules(r)
        return None if r.problems else config

    def _rules(self, r: _Reader) -> None:
        if not self.buckets and self.postgres is None:
            r.fail("", "nothing to refresh: configure 'buckets' and/or 'postgres'")
            return
        sources = {b.source_uri.bucket for b in self.buckets}
        for i, b in enumerate(self.buckets):
            t = b.target_uri
            if t.bucket in sources:
                r.fail("", f"buckets[{i}].target: bucket {t.bucket!r} is a source bucket; refusing to write to it")
                return
            if looks_like_prod(t.bucket):
                r.fail("", f"buckets[{i}].target: bucket {t.bucket!r} is named like prod")
                return
        labels = [b.label for b in self.buckets]
        if len(set(labels)) != len(labels):
            r.fail("", "buckets: a mapping is listed more than once")
            return
        if self.manifest_uri and self.manifest_uri.startswith("s3://"):
            try:
                m = parse_s3_uri(self.manifest_uri, what="manifest_uri")
            except ConfigError as exc:
                r.fail("", str(exc))
                return
            if m.bucket in sources:
                r.fail("", "manifest_uri: in a source bucket; the refresh never writes to prod")
                return
            for b in self.buckets:
                if b.target_uri.contains(m) or m.contains(b.target_uri):
                    r.fail("", f"manifest_uri: overlaps bucket target {b.target}; the sync would delete it")
                    return

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


def parse_config(raw: Any, *, path: str = "<config>") -> RefreshConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    problems: list[str] = []
    config = RefreshConfig.read(raw, _Reader(problems))
    if problems or config is None:
        raise ConfigError(f"{path}: " + "; ".join(problems or ["invalid"]))
    return replace(config, path=path)


def read_yaml(path: Path) -> Any:
    """The config file as YAML; a missing or unreadable file, bad YAML or a duplicate key is a
    :class:`ConfigError` naming the file (:mod:`greenlight.yamlfile`'s rules, without its pydantic import)."""
    import yaml

    class UniqueKeys(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read as UTF-8 text: {exc}") from exc
    try:
        return yaml.load(text, Loader=UniqueKeys)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_config(path: str | os.PathLike | None = None) -> RefreshConfig:
    """Read and validate the refresh config (``$GREENLIGHT_REFRESH_CONFIG`` or the packaged one)."""
    resolved = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    return parse_config(read_yaml(resolved), path=str(resolved))

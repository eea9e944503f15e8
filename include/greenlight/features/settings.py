"""Feature settings: how to reach PostgreSQL (offline store + SQL registry) and Redis (online store),
the checks' thresholds, and the Feast ``RepoConfig`` built from them in memory.

Configuration (one name per setting, no secret in any file):

* PostgreSQL: a libpq URI in ``GREENLIGHT_PG_URI`` (``postgresql://user:pw@host:5432/db?sslmode=...``)
  — or, inside Airflow, the connection ``greenlight_postgres`` (see ``greenlight.dagsupport.features``).
  It holds the offline store (table ``ohlcv_5m`` + the feature views of ``feature_repo/schema.sql``)
  and Feast's SQL registry, in its own schema ``feast_registry``.
* Redis: ``GREENLIGHT_REDIS_URL`` (``redis://[:pw@]host:6379/0``, ``rediss://`` for TLS) — or the
  Airflow connection ``greenlight_redis``. Feast's online store.
* ``GREENLIGHT_FEAST_PROJECT`` (default ``greenlight``), ``GREENLIGHT_FEATURES_MAX_AGE_MINUTES`` (30),
  ``GREENLIGHT_FEATURES_OVERLAP_MINUTES`` (60), ``GREENLIGHT_FEATURES_PARITY_SAMPLE`` (20, at least 1),
  ``GREENLIGHT_FEATURES_TOLERANCE`` (1e-9, relative), ``GREENLIGHT_FEATURES_WRITE_PATH``
  (``materialize``), ``GREENLIGHT_FEATURE_REPO`` (the repo folder).

The Feast ``RepoConfig`` (:meth:`FeatureSettings.repo_config`) sets
``materialization.pull_latest_features: true``: PostgreSQL returns only the newest row per entity in
the window instead of Feast reading every row into Python — same online values, ~4x faster.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from greenlight.errors import ConfigError
from greenlight.paths import INCLUDE_DIR

REPO_PATH = INCLUDE_DIR / "feature_repo"
REGISTRY_SCHEMA = "feast_registry"
ENTITY = "symbol"
BAR = timedelta(minutes=5)
PARITY_SAMPLE_ENV = "GREENLIGHT_FEATURES_PARITY_SAMPLE"


def check_parity_sample(value: Any, setting: str = "parity_sample") -> int:
    """The number of entities a parity check compares: an integer >= 1, else :class:`ConfigError`.

    0 would check nothing, yet the DAG would still emit the view's Asset event as if it had been verified.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{setting}={value!r}: must be an integer >= 1 (a parity check of 0 entities checks nothing "
            "but would still report the feature view as verified)"
        )
    return value


@dataclass(frozen=True)
class PgParams:
    """PostgreSQL connection parameters (the offline store and the registry's database)."""

    host: str
    port: int = 5432
    database: str = "postgres"
    user: str = "postgres"
    password: str = field(default="", repr=False)
    sslmode: str = "prefer"

    @classmethod
    def from_uri(cls, uri: str) -> PgParams:
        parts = urlsplit(uri)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"not a PostgreSQL URI (postgresql://...): scheme {parts.scheme!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        host = parts.hostname or query.get("host") or ""
        if not host:
            raise ConfigError("PostgreSQL URI has no host")
        return cls(
            host=host,
            port=parts.port or int(query.get("port", 5432)),
            database=unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username or "") or "postgres",
            password=unquote(parts.password or ""),
            sslmode=query.get("sslmode", "prefer"),
        )

    def connect(self, **kwargs):
        import psycopg  # heavy: imported here (see the package docstring)

        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password or None,
            sslmode=self.sslmode,
            connect_timeout=10,
            **kwargs,
        )

    def sqlalchemy_url(self, search_path: str | None = None) -> str:
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"postgresql+psycopg://{auth}@{host}:{self.port}/{quote(self.database, safe='')}?sslmode={self.sslmode}"
        if search_path:
            url += "&options=" + quote(f"-csearch_path={search_path}", safe="")
        return url


@dataclass(frozen=True)
class RedisParams:
    """Redis connection parameters (Feast's online store)."""

    host: str
    port: int = 6379
    db: int = 0
    password: str = field(default="", repr=False)
    username: str = ""
    ssl: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisParams:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"not a Redis URL (redis://host:port/db): scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ConfigError("Redis URL has no host (unix sockets are not supported by Feast)")
        path = parts.path.strip("/")
        return cls(
            host=parts.hostname,
            port=parts.port or 6379,
            db=int(path) if path else 0,
            password=unquote(parts.password or ""),
            username=unquote(parts.username or ""),
            ssl=parts.scheme == "rediss",
        )

    def feast_connection_string(self) -> str:
        """Feast's format: ``host:port,db=0,password=...,ssl=true``."""
        items = [f"{self.host}:{self.port}", f"db={self.db}"]
        if self.username:
            items.append(f"username={self.username}")
        if self.password:
            items.append(f"password={self.password}")
        if self.ssl:
            items.append("ssl=true")
        return ",".join(items)

    def client(self):
        import redis  # heavy: imported here (see the package docstring)

        return redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username or None,
            password=self.password or None,
            ssl=self.ssl,
            socket_connect_timeout=10,
            socket_timeout=60,
        )


def _write_path(value: str) -> str:
    if value not in ("materialize", "direct"):
        raise ConfigError(f"GREENLIGHT_FEATURES_WRITE_PATH={value!r}: use 'materialize' or 'direct'")
    return value


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc


@dataclass(frozen=True)
class FeatureSettings:
    """Everything greenlight needs to reach the stores, plus the checks' thresholds."""

    pg: PgParams
    redis: RedisParams
    project: str = "greenlight"
    repo_path: Path = REPO_PATH
    max_age: timedelta = timedelta(minutes=30)
    overlap: timedelta = timedelta(minutes=60)
    parity_sample: int = 20
    tolerance: float = 1e-9
    #: Feast's ``materialization.pull_latest_features`` (False = Feast's default, kept for the benchmark).
    pull_latest: bool = True
    #: ``materialize`` = ``FeatureStore.materialize(start, end)``; ``direct`` = the same Feast offline
    #: query and online writer without the registry bookkeeping (see :func:`materialize_window`).
    write_path: str = "materialize"

    @classmethod
    def from_env(cls, pg_uri: str | None = None, redis_url: str | None = None) -> FeatureSettings:
        pg_uri = pg_uri or os.environ.get("GREENLIGHT_PG_URI")
        redis_url = redis_url or os.environ.get("GREENLIGHT_REDIS_URL")
        if not pg_uri:
            raise ConfigError("no PostgreSQL configured: set the connection greenlight_postgres or GREENLIGHT_PG_URI")
        if not redis_url:
            raise ConfigError("no Redis configured: set the connection greenlight_redis or GREENLIGHT_REDIS_URL")
        return cls(
            pg=PgParams.from_uri(pg_uri),
            redis=RedisParams.from_url(redis_url),
            project=os.environ.get("GREENLIGHT_FEAST_PROJECT", "greenlight"),
            repo_path=Path(os.environ.get("GREENLIGHT_FEATURE_REPO") or REPO_PATH),
            max_age=timedelta(minutes=_env_number("GREENLIGHT_FEATURES_MAX_AGE_MINUTES", 30)),
            overlap=timedelta(minutes=_env_number("GREENLIGHT_FEATURES_OVERLAP_MINUTES", 60)),
            parity_sample=check_parity_sample(int(_env_number(PARITY_SAMPLE_ENV, 20)), PARITY_SAMPLE_ENV),
            tolerance=_env_number("GREENLIGHT_FEATURES_TOLERANCE", 1e-9),
            write_path=_write_path(os.environ.get("GREENLIGHT_FEATURES_WRITE_PATH", "materialize")),
        )

    def __post_init__(self) -> None:
        check_parity_sample(self.parity_sample)

    def replace(self, **changes: Any) -> FeatureSettings:
        return dataclasses.replace(self, **changes)

    def repo_config(self):
        """The Feast ``RepoConfig``, built in memory (no feature_store.yaml with hosts or secrets)."""
        # heavy: Feast, imported here (see the package docstring)
        from feast.repo_config import RepoConfig

        return RepoConfig(
            project=self.project,
            provider="local",
            repo_path=self.repo_path,
            registry={
                "registry_type": "sql",
                "path": self.pg.sqlalchemy_url(search_path=REGISTRY_SCHEMA),
                "cache_ttl_seconds": 60,
                # Feast 0.67 marks a view MATERIALIZING during store.materialize and by default refuses
                # to serve it meanwhile (feast #6780): an hourly job must not interrupt online reads.
                "serve_features_while_materializing": True,
                "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
            },
            offline_store={
                "type": "postgres",
                "host": self.pg.host,
                "port": self.pg.port,
                "database": self.pg.database,
                "db_schema": "public",
                "user": self.pg.user,
                "password": self.pg.password,
                "sslmode": self.pg.sslmode,
            },
            online_store={"type": "redis", "connection_string": self.redis.feast_connection_string()},
            materialization={"pull_latest_features": self.pull_latest},
            entity_key_serialization_version=3,
        )


def utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO-8601 string (naive = UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"not an ISO-8601 date-time: {value!r}") from exc
    offset = value.utcoffset()
    # Rebuild as a plain datetime: pendulum's DateTime (Airflow's data interval) mixes badly with stdlib ones.
    plain = datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=UTC
    )
    return plain if offset is None else plain - offset

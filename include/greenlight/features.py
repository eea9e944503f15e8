"""Feature materialization PostgreSQL → Feast (Redis), with freshness and parity checks.

The library behind the ``feature_materialization`` DAG, the ``python -m greenlight.features`` CLI,
the demo and the benchmark. It does not import Airflow; Feast, psycopg and redis are imported inside
the functions that need them (``from feast import FeatureStore`` alone costs ~5 s).

Configuration (one name per setting, no secret in any file):

* PostgreSQL: a libpq URI in ``GREENLIGHT_PG_URI`` (``postgresql://user:pw@host:5432/db?sslmode=...``)
  — or, inside Airflow, the connection ``greenlight_postgres`` (see ``greenlight.dagsupport.features``).
  It holds the offline store (table ``ohlcv_5m`` + the feature views of ``feature_repo/schema.sql``)
  and Feast's SQL registry, in its own schema ``feast_registry``.
* Redis: ``GREENLIGHT_REDIS_URL`` (``redis://[:pw@]host:6379/0``, ``rediss://`` for TLS) — or the
  Airflow connection ``greenlight_redis``. Feast's online store.
* ``GREENLIGHT_FEAST_PROJECT`` (default ``greenlight``), ``GREENLIGHT_FEATURES_MAX_AGE_MINUTES`` (30),
  ``GREENLIGHT_FEATURES_OVERLAP_MINUTES`` (60), ``GREENLIGHT_FEATURES_PARITY_SAMPLE`` (20),
  ``GREENLIGHT_FEATURES_TOLERANCE`` (1e-9, relative), ``GREENLIGHT_FEATURE_REPO`` (the repo folder).

The Feast ``RepoConfig`` is built in memory from these (:meth:`FeatureSettings.repo_config`) with
``materialization.pull_latest_features: true``: PostgreSQL returns only the newest row per entity in
the window instead of Feast reading every row into Python — same online values, ~4x faster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from greenlight.errors import ConfigError, GreenlightError
from greenlight.paths import INCLUDE_DIR

log = logging.getLogger("greenlight.features")

REPO_PATH = INCLUDE_DIR / "feature_repo"
REGISTRY_SCHEMA = "feast_registry"
ENTITY = "symbol"
BAR = timedelta(minutes=5)


# --------------------------------------------------------------------------------------------- errors
class FeatureError(GreenlightError):
    """Base class of feature materialization errors."""

    kind = "features"


class SourceStaleError(FeatureError):
    """The offline source's newest row is older than allowed: a data problem, never retried."""

    kind = "source_stale"

    def __init__(self, source: str, newest: datetime | None, age: timedelta | None, max_age: timedelta, as_of):
        self.source = source
        self.newest = newest
        self.age = age
        self.max_age = max_age
        if newest is None:
            msg = f"source {source} has no row at or before {as_of.isoformat()}"
        else:
            msg = (
                f"source {source} is stale: newest row {newest.isoformat()} is {_fmt_age(age)} old at "
                f"{as_of.isoformat()} (allowed {_fmt_age(max_age)})"
            )
        super().__init__(msg)


class RegistryDriftError(FeatureError):
    """The deployed Feast registry differs from the repo's definitions: redeploy (``apply``) first."""

    kind = "registry_drift"

    def __init__(self, changes: list[str]):
        self.changes = changes
        super().__init__(
            "deployed Feast registry differs from include/feature_repo (run `python -m greenlight.features "
            "apply` as a deploy step after review):\n" + "\n".join(changes)
        )


class ParityError(FeatureError):
    """Online (Redis) values differ from the offline (PostgreSQL) values they were materialized from."""

    kind = "parity"

    def __init__(self, view: str, mismatches: list[dict[str, Any]], checked: int):
        self.view = view
        self.mismatches = mismatches
        self.checked = checked
        shown = "; ".join(_fmt_mismatch(m) for m in mismatches[:10])
        more = f" (+{len(mismatches) - 10} more)" if len(mismatches) > 10 else ""
        super().__init__(f"parity failed for {view}: {len(mismatches)} of {checked} entities differ: {shown}{more}")


class FeatureBackendUnavailable(FeatureError):
    """PostgreSQL or Redis could not be reached: transient, Airflow retries with backoff."""

    kind = "backend_unavailable"
    retryable = True


def _fmt_age(age: timedelta | None) -> str:
    if age is None:
        return "?"
    seconds = int(age.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _fmt_mismatch(m: dict[str, Any]) -> str:
    if m["problem"] == "value":
        return f"{m['entity']}.{m['feature']}: online {m['online']!r} != offline {m['offline']!r} at {m['event_ts']}"
    return f"{m['entity']}: {m['problem']} ({m.get('detail', '')})"


@contextlib.contextmanager
def backend_errors(what: str) -> Generator[None]:
    """Turn connection-level errors of PostgreSQL / Redis / the SQL registry into a retryable error."""
    import psycopg
    import redis
    import sqlalchemy.exc

    transient: tuple[type[BaseException], ...] = (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        ConnectionError,
        TimeoutError,
    )
    try:
        yield
    except transient as exc:
        raise FeatureBackendUnavailable(f"{what}: {type(exc).__name__}: {str(exc).strip()[:500]}") from exc


# --------------------------------------------------------------------------------------------- config
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
        import psycopg

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
        import redis

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
            parity_sample=int(_env_number("GREENLIGHT_FEATURES_PARITY_SAMPLE", 20)),
            tolerance=_env_number("GREENLIGHT_FEATURES_TOLERANCE", 1e-9),
            write_path=_write_path(os.environ.get("GREENLIGHT_FEATURES_WRITE_PATH", "materialize")),
        )

    def replace(self, **changes: Any) -> FeatureSettings:
        return dataclasses.replace(self, **changes)

    def repo_config(self):
        """The Feast ``RepoConfig``, built in memory (no feature_store.yaml with hosts or secrets)."""
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


# ------------------------------------------------------------------------------------ repo & registry
def ensure_schema(settings: FeatureSettings) -> None:
    """Create the source table, the feature views (SQL) and the registry's schema; idempotent."""
    sql = (settings.repo_path / "schema.sql").read_text()
    with backend_errors("PostgreSQL"), settings.pg.connect(autocommit=True) as conn:
        conn.execute(sql)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{REGISTRY_SCHEMA}"')


def load_definitions(repo_path: Path = REPO_PATH, project: str = "greenlight"):
    """The repo's Feast objects as a ``RepoContents`` (every ``*.py`` in the repo folder, like ``feast``)."""
    import importlib.util

    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource
    from feast.repo_contents import RepoContents

    contents = RepoContents(
        projects=[Project(name=project)],
        data_sources=[],
        feature_views=[],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=[],
        feature_services=[],
        permissions=[],
    )
    for path in sorted(Path(repo_path).glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"greenlight_feature_repo_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for obj in vars(module).values():
            if isinstance(obj, FeatureView) and not any(obj is v for v in contents.feature_views):
                contents.feature_views.append(obj)
                if obj.batch_source is not None and not any(obj.batch_source is s for s in contents.data_sources):
                    contents.data_sources.append(obj.batch_source)
            elif isinstance(obj, DataSource) and not any(obj is s for s in contents.data_sources):
                contents.data_sources.append(obj)
            elif isinstance(obj, Entity) and not any(obj is e for e in contents.entities):
                contents.entities.append(obj)
            elif isinstance(obj, FeatureService) and not any(obj is s for s in contents.feature_services):
                contents.feature_services.append(obj)
    return contents


def feature_store(settings: FeatureSettings):
    """A ``FeatureStore`` on the in-memory config (imports Feast: call inside tasks only)."""
    from feast import FeatureStore

    with backend_errors("Feast registry (PostgreSQL)"):
        return FeatureStore(repo_path=str(settings.repo_path), config=settings.repo_config())


def registry_diff(settings: FeatureSettings, store=None) -> list[str]:
    """What ``apply`` would change in the deployed registry (empty = registry matches the repo)."""
    from feast.diff.property_diff import TransitionType

    store = store or feature_store(settings)
    repo = load_definitions(settings.repo_path, settings.project)
    with backend_errors("Feast registry (PostgreSQL)"):
        diff, _infra, _ = store.plan(repo)
    changes = []
    for d in diff.feast_object_diffs:
        if d.transition_type == TransitionType.UNCHANGED or d.name == "__dummy":
            continue
        props = [p for p in d.feast_object_property_diffs if not _only_meta_differs(p)]
        if d.transition_type == TransitionType.UPDATE and not props:
            continue
        line = f"{d.transition_type.name.lower()} {d.feast_object_type.value} {d.name}"
        for p in props:
            line += f"\n    {p.property_name}: {_short(p.val_existing)} -> {_short(p.val_declared)}"
        changes.append(line)
    return changes


def _only_meta_differs(prop) -> bool:
    """Feast's own bookkeeping is not a definition change: ``store.materialize`` re-saves each view and
    stamps ``meta`` timestamps on its embedded data source, which ``feast plan`` then reports as an
    update. Compare such properties with ``meta`` cleared."""
    if prop.property_name == "meta":
        return True
    old, new = prop.val_existing, prop.val_declared
    if not (hasattr(old, "DESCRIPTOR") and hasattr(new, "DESCRIPTOR")) or "meta" not in old.DESCRIPTOR.fields_by_name:
        return False
    old, new = type(old).FromString(old.SerializeToString()), type(new).FromString(new.SerializeToString())
    old.ClearField("meta")
    new.ClearField("meta")
    return old == new


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_registry(settings: FeatureSettings, store=None) -> list[str]:
    """Fail with the diff unless the deployed registry equals the repo; return the feature view names."""
    store = store or feature_store(settings)
    changes = registry_diff(settings, store)
    if changes:
        raise RegistryDriftError(changes)
    with backend_errors("Feast registry (PostgreSQL)"):
        return sorted(v.name for v in store.list_feature_views() if v.online)


def apply_definitions(settings: FeatureSettings) -> list[str]:
    """The deploy step (``feast apply``): create the SQL objects, register the repo; returns the changes."""
    from feast.repo_operations import apply_total_with_repo_instance

    ensure_schema(settings)
    store = feature_store(settings)
    changes = registry_diff(settings, store)
    repo = load_definitions(settings.repo_path, settings.project)
    with backend_errors("Feast apply"):
        apply_total_with_repo_instance(store, settings.project, store.registry, repo, skip_source_validation=False)
    log.info("feast apply: %d change(s)%s", len(changes), "".join("\n  " + c for c in changes))
    return changes


# ------------------------------------------------------------------------------------------ freshness
def _source_sql(view) -> tuple[str, str]:
    """(FROM expression, timestamp column) of a feature view's PostgreSQL source."""
    source = view.batch_source
    return source.get_table_query_string_with_alias("src"), source.timestamp_field


def check_freshness(settings: FeatureSettings, views: Sequence, as_of: datetime, max_age: timedelta | None = None):
    """Runbook step 1: the newest source row at or before ``as_of`` must be younger than ``max_age``.

    ``as_of`` is the window end (capped at now), so a backfill checks the data its window needed, not
    today's. Raises :class:`SourceStaleError` with the age; returns one row per distinct source.
    """
    max_age = settings.max_age if max_age is None else max_age
    as_of = min(utc(as_of), datetime.now(UTC))
    report, seen = [], set()
    for view in views:
        from_expr, ts_col = _source_sql(view)
        if from_expr in seen:
            continue
        seen.add(from_expr)
        with backend_errors("PostgreSQL"), settings.pg.connect() as conn:
            (newest,) = conn.execute(
                f'SELECT max("{ts_col}") FROM {from_expr} WHERE "{ts_col}" <= %s', (as_of,)
            ).fetchone()
        name = view.batch_source.name
        if newest is None:
            raise SourceStaleError(name, None, None, max_age, as_of)
        age = as_of - newest
        row = {"source": name, "newest": newest.isoformat(), "age_s": round(age.total_seconds(), 1), "ok": True}
        if age > max_age:
            raise SourceStaleError(name, newest, age, max_age, as_of)
        report.append(row)
        log.info("source %s fresh: newest row %s, %s old at %s", name, newest.isoformat(), _fmt_age(age), as_of)
    return report


# ------------------------------------------------------------------------------------ materialization
@dataclass(frozen=True)
class Window:
    """The half-open-looking but inclusive interval ``[start, end]`` Feast materializes."""

    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def window_for(
    data_interval_start: datetime | str | None,
    data_interval_end: datetime | str | None,
    *,
    overlap: timedelta,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    default_interval: timedelta = timedelta(hours=1),
) -> Window:
    """The window a run owns: ``[data_interval_start - overlap, data_interval_end]``.

    An explicit ``start``/``end`` (the DAG's params) replaces it as given, with no overlap. A manual
    run without a data interval ends now and covers ``default_interval`` + overlap.
    """
    if start is not None or end is not None:
        if start is None or end is None:
            raise ConfigError("give both start and end, or neither")
        window = Window(utc(start), utc(end))
    else:
        w_end = utc(data_interval_end) if data_interval_end else datetime.now(UTC)
        w_start = utc(data_interval_start) if data_interval_start else w_end - default_interval
        if w_start >= w_end:
            w_start = w_end - default_interval
        window = Window(w_start - overlap, w_end)
    if window.start >= window.end:
        raise ConfigError(f"empty window: start {window.start.isoformat()} is not before end {window.end.isoformat()}")
    return window


def get_view(store, name: str):
    from feast.errors import FeatureViewNotFoundException

    try:
        with backend_errors("Feast registry (PostgreSQL)"):
            return store.get_feature_view(name)
    except FeatureViewNotFoundException as exc:
        raise ConfigError(f"unknown feature view {name!r}: {exc}") from exc


def window_stats(settings: FeatureSettings, view, window: Window) -> dict[str, Any]:
    """Rows and distinct entities of the view's source inside the window (what a run should write)."""
    from_expr, ts_col = _source_sql(view)
    with backend_errors("PostgreSQL"), settings.pg.connect() as conn:
        rows, entities, newest = conn.execute(
            f'SELECT count(*), count(DISTINCT "{ENTITY}"), max("{ts_col}") FROM {from_expr} '
            f'WHERE "{ts_col}" BETWEEN %s AND %s',
            (window.start, window.end),
        ).fetchone()
    return {"rows": rows, "entities": entities, "newest": newest.isoformat() if newest else None}


def materialize_window(settings: FeatureSettings, view_name: str, window: Window, store=None) -> dict[str, Any]:
    """Materialize one feature view over an Airflow-owned window with ``store.materialize(start, end)``.

    Not ``materialize_incremental``: the registry watermark plays no part, so windows are independent
    (backfills, clears and reruns work). Feast writes the newest row per entity in the window and skips
    any entity whose online row is as new or newer, so a rerun writes nothing and an old window never
    overwrites newer values.

    With ``settings.write_path == "direct"`` the same work is done without ``store.materialize``'s
    registry bookkeeping (the MATERIALIZING state round trip and the materialization-interval record,
    ~0.2 s of SQL-registry writes per view): Feast's own offline query (``pull_latest_from_table_or_query``)
    feeds Feast's own online writer (``online_write_batch``, with its timestamp check), exactly as
    Feast's local compute engine does — so the Redis bytes are identical and ``get_online_features``
    reads them. Greenlight never reads that bookkeeping: the window is owned by Airflow.
    """
    store = store or feature_store(settings)
    started = time.monotonic()
    with backend_errors(f"materialize {view_name}"):
        if settings.write_path == "direct":
            written = _write_direct(store, get_view(store, view_name), window)
        else:
            store.materialize(start_date=window.start, end_date=window.end, feature_views=[view_name])
            written = None
    duration = time.monotonic() - started
    result = {"view": view_name, **window.as_dict(), "duration_s": round(duration, 3), "path": settings.write_path}
    if written is not None:
        result["rows_offered"] = written
    return result


def _write_direct(store, view, window: Window) -> int:
    """Newest row per entity in the window (Feast's PostgreSQL query) → Feast's Redis online writer."""
    from feast.utils import _convert_arrow_to_proto

    provider = store._get_provider()
    source = view.batch_source
    job = provider.offline_store.pull_latest_from_table_or_query(
        config=store.config,
        data_source=source,
        join_key_columns=[ENTITY],
        feature_name_columns=[f.name for f in view.features],
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None,
        start_date=window.start,
        end_date=window.end,
    )
    table = job.to_arrow()
    if table.num_rows == 0:
        return 0
    join_keys = {entity.name: entity.dtype.to_value_type() for entity in view.entity_columns}
    rows = _convert_arrow_to_proto(table, view, join_keys)
    provider.online_write_batch(store.config, view, rows, progress=None)
    return len(rows)


def _entity_key(value: str):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[ENTITY], entity_values=[Value(string_val=value)])


def redis_key(settings: FeatureSettings, entity: str) -> bytes:
    """The Redis hash Feast keeps an entity's online rows in (shared by every view of that entity)."""
    from feast.infra.online_stores.helpers import _redis_key

    return _redis_key(settings.project, _entity_key(entity), entity_key_serialization_version=3)


def view_fields(view) -> list[bytes]:
    """The hash fields one feature view owns inside an entity's hash: one per feature + ``_ts:<view>``."""
    from feast.infra.online_stores.helpers import _mmh3

    return [_mmh3(f"{view.name}:{f.name}") for f in view.features] + [f"_ts:{view.name}".encode()]


def entities_in_window(settings: FeatureSettings, view, window: Window) -> list[str]:
    from_expr, ts_col = _source_sql(view)
    with backend_errors("PostgreSQL"), settings.pg.connect() as conn:
        rows = conn.execute(
            f'SELECT DISTINCT "{ENTITY}" FROM {from_expr} WHERE "{ts_col}" BETWEEN %s AND %s ORDER BY 1',
            (window.start, window.end),
        ).fetchall()
    return [r[0] for r in rows]


def clear_view_keys(settings: FeatureSettings, view, entities: Sequence[str]) -> int:
    """Delete one feature view's online values for these entities — its fields only (``HDEL``).

    Entities' hashes are shared by all views of the entity, so other views' values stay; Redis drops a
    hash once it is empty. Never ``FLUSHDB``. Returns the number of entities that had this view's values.
    """
    fields = view_fields(view)
    keys = [redis_key(settings, e) for e in entities]
    if not keys:
        return 0
    client = settings.redis.client()
    with backend_errors("Redis"):
        try:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hdel(key, *fields)
                removed = pipe.execute()
        finally:
            client.close()
    return sum(1 for n in removed if n)


def full_refresh(settings: FeatureSettings, view_name: str, window: Window, store=None) -> dict[str, Any]:
    """Re-materialize a range from scratch: delete the view's online values of the entities that have
    rows in the range, then materialize the range. Only this view's fields are touched."""
    store = store or feature_store(settings)
    view = get_view(store, view_name)
    entities = entities_in_window(settings, view, window)
    cleared = clear_view_keys(settings, view, entities)
    log.info("full refresh %s: cleared %d of %d entities' online values", view_name, cleared, len(entities))
    result = materialize_window(settings, view_name, window, store)
    return {**result, "full_refresh": True, "cleared": cleared}


# -------------------------------------------------------------------------------------------- parity
def _close(a: Any, b: Any, tolerance: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return abs(fa - fb) <= tolerance * max(1.0, abs(fb))
    return a == b


def _since(since: datetime | None, view, as_of: datetime) -> datetime:
    if since is not None:
        return utc(since) - timedelta(microseconds=1)
    return as_of - view.ttl if view.ttl else datetime(1970, 1, 1, tzinfo=UTC)


def parity_check(
    settings: FeatureSettings,
    view_name: str,
    as_of: datetime,
    *,
    sample: int | None = None,
    since: datetime | None = None,
    seed: str | int = 0,
    entities: Sequence[str] | None = None,
    store=None,
    raise_on_mismatch: bool = True,
) -> dict[str, Any]:
    """Runbook step 5, for every feature of a sample of entities: online (via ``get_online_features``,
    the path inference uses) equals the offline row it came from.

    Entities are sampled among those with source rows in ``(since, as_of]`` — by default the view's TTL;
    the DAG passes its window start, so a run checks what it was responsible for. For each sampled
    entity with a source row at or before ``as_of``, the online row must exist, be at
    least as new as that offline row, and each feature must equal the offline value of the row with the
    online row's event timestamp (within the relative tolerance). Raises :class:`ParityError` listing
    every mismatch.
    """
    store = store or feature_store(settings)
    view = get_view(store, view_name)
    as_of = utc(as_of)
    sample = settings.parity_sample if sample is None else sample
    from_expr, ts_col = _source_sql(view)
    features = [f.name for f in view.features]
    cols = ", ".join(f'"{c}"' for c in features)
    with backend_errors("PostgreSQL"), settings.pg.connect() as conn:
        if entities is None:
            candidates = [
                r[0]
                for r in conn.execute(
                    f'SELECT DISTINCT "{ENTITY}" FROM {from_expr} WHERE "{ts_col}" <= %s AND "{ts_col}" > %s',
                    (as_of, _since(since, view, as_of)),
                ).fetchall()
            ]
            candidates.sort()
            entities = random.Random(str(seed)).sample(candidates, min(sample, len(candidates)))
        entities = sorted(entities)
        latest = {
            r[0]: (r[1], r[2:])
            for r in conn.execute(
                f'SELECT DISTINCT ON ("{ENTITY}") "{ENTITY}", "{ts_col}", {cols} FROM {from_expr} '
                f'WHERE "{ENTITY}" = ANY(%s) AND "{ts_col}" <= %s ORDER BY "{ENTITY}", "{ts_col}" DESC',
                (list(entities), as_of),
            ).fetchall()
        }
    if not entities:
        return {
            "view": view_name,
            "as_of": as_of.isoformat(),
            "checked": 0,
            "features": features,
            "entities": [],
            "mismatches": [],
        }
    with backend_errors("Redis online read"):
        online = store.get_online_features(
            features=[f"{view_name}:{f}" for f in features],
            entity_rows=[{ENTITY: e} for e in entities],
        ).to_dict(include_event_timestamps=True)
    # Event timestamps come back as whole epoch seconds (0 = no online row).
    online_ts: dict[str, datetime | None] = {}
    for i, e in enumerate(entities):
        stamps = [online[f"{f}__ts"][i] for f in features if online.get(f"{f}__ts")]
        newest = max((s for s in stamps if s), default=0)
        online_ts[e] = datetime.fromtimestamp(newest, UTC) if newest else None
    # Offline rows at the online rows' own timestamps (newer than as_of when a later window ran first).
    wanted = [(e, ts) for e, ts in online_ts.items() if ts is not None]
    exact: dict[tuple[str, datetime], tuple] = {}
    if wanted:
        with backend_errors("PostgreSQL"), settings.pg.connect() as conn:
            for r in conn.execute(
                f'SELECT "{ENTITY}", "{ts_col}", {cols} FROM {from_expr} '
                f'WHERE ("{ENTITY}", date_trunc(\'second\', "{ts_col}")) IN '
                f"(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))",
                ([w[0] for w in wanted], [w[1] for w in wanted]),
            ).fetchall():
                exact[(r[0], utc(r[1]).replace(microsecond=0))] = r[2:]
    mismatches: list[dict[str, Any]] = []
    for i, e in enumerate(entities):
        if e not in latest:
            continue  # no offline row at or before as_of: nothing is expected online
        off_ts = utc(latest[e][0])
        on_ts = online_ts[e]
        if on_ts is None:
            mismatches.append({"entity": e, "problem": "missing online", "detail": f"offline row at {off_ts}"})
            continue
        if on_ts < off_ts:
            mismatches.append(
                {"entity": e, "problem": "stale online", "detail": f"online row {on_ts} < offline row {off_ts}"}
            )
            continue
        offline_values = exact.get((e, on_ts))
        if offline_values is None:
            mismatches.append(
                {"entity": e, "problem": "online row not in offline store", "detail": f"no source row at {on_ts}"}
            )
            continue
        for f, expected in zip(features, offline_values, strict=True):
            got = online[f][i]
            if not _close(got, expected, settings.tolerance):
                mismatches.append(
                    {
                        "entity": e,
                        "problem": "value",
                        "feature": f,
                        "online": got,
                        "offline": expected,
                        "event_ts": on_ts.isoformat(),
                    }
                )
    checked = sum(1 for e in entities if e in latest)
    report = {
        "view": view_name,
        "as_of": as_of.isoformat(),
        "checked": checked,
        "features": features,
        "entities": list(entities),
        "mismatches": mismatches,
    }
    if mismatches and raise_on_mismatch:
        raise ParityError(view_name, mismatches, checked)
    return report


# ------------------------------------------------------------------------------------------- seeding
DEMO_SYMBOLS = {"USDCOP": 4000.0, "EURUSD": 1.08, "GBPUSD": 1.27, "USDJPY": 150.0, "USDMXN": 17.0}


def symbols(count: int) -> dict[str, float]:
    """``count`` symbols with start prices: the demo's five FX pairs, then ``SYM0005``, ``SYM0006``..."""
    out = dict(list(DEMO_SYMBOLS.items())[:count])
    for i in range(len(out), count):
        out[f"SYM{i:04d}"] = 20.0 + (i * 37) % 480
    return out


def generate_bars(
    prices: dict[str, float], start: datetime, end: datetime, *, seed: int = 7, vol: float = 0.0008
) -> list[tuple]:
    """Realistic 5-minute OHLCV bars (a geometric random walk per symbol) for ``[start, end)``.

    Deterministic per (seed, symbol, bar time): regenerating an overlapping range yields the same rows.
    """
    start = utc(start).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 5)
    end = utc(end)
    times = []
    t = start
    while t < end:
        times.append(t)
        t += BAR
    rows = []
    for sym, price in prices.items():
        rng = random.Random(f"{seed}:{sym}:{start.isoformat()}")
        close = price
        for ts in times:
            open_ = close * math.exp(rng.gauss(0, vol / 4))
            close = open_ * math.exp(rng.gauss(0, vol))
            high = max(open_, close) * (1 + abs(rng.gauss(0, vol / 2)))
            low = min(open_, close) * (1 - abs(rng.gauss(0, vol / 2)))
            volume = round(rng.lognormvariate(8, 0.6), 2)
            rows.append((sym, ts, open_, high, low, close, volume))
    return rows


def insert_bars(settings: FeatureSettings, rows: Sequence[tuple], *, upsert: bool = True) -> int:
    """Load bars with COPY into a temp table, then insert (``upsert``: corrections replace the row)."""
    with backend_errors("PostgreSQL"), settings.pg.connect() as conn:
        conn.execute(
            "CREATE TEMP TABLE _bars (symbol text, ts timestamptz, open float8, high float8, low float8, "
            "close float8, volume float8) ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY _bars FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conflict = (
            "DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, "
            "volume = EXCLUDED.volume, loaded_at = now()"
            if upsert
            else "DO NOTHING"
        )
        cur = conn.execute(
            f"INSERT INTO ohlcv_5m (symbol, ts, open, high, low, close, volume) SELECT * FROM _bars "
            f"ON CONFLICT (symbol, ts) {conflict}"
        )
        count = cur.rowcount
        conn.commit()
    return count


def seed(
    settings: FeatureSettings,
    *,
    n_symbols: int = 5,
    days: float = 1.0,
    end: datetime | None = None,
    seed: int = 7,
) -> dict[str, Any]:
    """Create the schema and ``days`` of 5-minute bars for ``n_symbols`` symbols ending at ``end`` (now)."""
    ensure_schema(settings)
    end = utc(end or datetime.now(UTC))
    start = end - timedelta(days=days)
    rows = generate_bars(symbols(n_symbols), start, end, seed=seed)
    inserted = insert_bars(settings, rows, upsert=False)
    newest = max(r[1] for r in rows) if rows else None
    return {"symbols": n_symbols, "rows": len(rows), "inserted": inserted, "newest": newest.isoformat()}


# ---------------------------------------------------------------------------------------------- demo
def run_demo(
    workdir: str | os.PathLike, *, n_symbols: int = 5, keep_running: bool = False, stack=None
) -> dict[str, Any]:
    """``make demo``: start PostgreSQL + Redis, seed a day of bars, apply, materialize the last hour
    (+ overlap) of every view, run the parity check and read one symbol's features back.

    Returns a JSON-able summary. Servers are stopped by PID at the end unless ``keep_running``, or
    unless the caller passed its own running ``stack`` (a ``FeatureStack``; ``make airflow``).
    """
    from greenlight.dev.featurestack import start_stack

    started = time.monotonic()
    if stack is not None:
        keep_running = True
    else:
        stack = start_stack(Path(workdir) / "features")
    try:
        settings = FeatureSettings.from_env(stack.postgres.uri, stack.redis.url)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        seeded = seed(settings, n_symbols=n_symbols, days=1, end=now)
        changes = apply_definitions(settings)
        store = feature_store(settings)
        views = check_registry(settings, store)
        window = window_for(now - timedelta(hours=1), now, overlap=settings.overlap)
        fresh = check_freshness(settings, [get_view(store, v) for v in views], window.end)
        materialized = [materialize_window(settings, v, window, store) for v in views]
        parity = [parity_check(settings, v, window.end, store=store) for v in views]
        sample = (
            store.get_online_features(
                features=[f"{v}:{f.name}" for v in views for f in get_view(store, v).features],
                entity_rows=[{ENTITY: "USDCOP"}],
            ).to_dict()
            if n_symbols
            else {}
        )
        summary = {
            "postgres": f"{stack.postgres.host}:{stack.postgres.port}/{stack.postgres.database}",
            "redis": f"{stack.redis.host}:{stack.redis.port}",
            "seeded": seeded,
            "registry_changes_applied": len(changes),
            "feature_views": views,
            "window": window.as_dict(),
            "freshness": fresh,
            "materialized": materialized,
            "parity": [{k: p[k] for k in ("view", "checked", "mismatches")} for p in parity],
            "online_sample": {k: (v[0] if isinstance(v, list) else v) for k, v in sample.items()},
            "duration_s": round(time.monotonic() - started, 2),
        }
        if keep_running:
            summary["env"] = stack.env()
            summary["pids"] = {"postgres": stack.postgres.pid, "redis": stack.redis.pid}
        return summary
    finally:
        if not keep_running:
            stack.stop()


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m greenlight.features {plan,apply,seed,materialize,parity,demo}`` (env-var config)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m greenlight.features", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan", help="show how the deployed registry differs from include/feature_repo (exit 1 if it does)")
    sub.add_parser("apply", help="deploy step: create the SQL objects and apply the repo to the registry")
    p_seed = sub.add_parser("seed", help="create the schema and demo bars")
    p_seed.add_argument("--symbols", type=int, default=5)
    p_seed.add_argument("--days", type=float, default=1.0)
    for name in ("materialize", "parity"):
        p = sub.add_parser(name)
        p.add_argument("--view", action="append", help="feature view (repeatable; default: all)")
        p.add_argument("--start", help="ISO-8601 (materialize)")
        p.add_argument("--end", help="ISO-8601; parity: as-of time (default now)")
        if name == "materialize":
            p.add_argument("--full-refresh", action="store_true", help="delete the views' online values first")
        else:
            p.add_argument("--sample", type=int)
    p_demo = sub.add_parser("demo", help="start local PostgreSQL + Redis and run everything once")
    p_demo.add_argument("--workdir", default=".local/demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "demo":
            print(json.dumps(run_demo(args.workdir), indent=2, default=str))
            return 0
        settings = FeatureSettings.from_env()
        if args.cmd == "plan":
            changes = registry_diff(settings)
            print("\n".join(changes) if changes else "registry matches the repo")
            return 1 if changes else 0
        if args.cmd == "apply":
            changes = apply_definitions(settings)
            print("\n".join(changes) if changes else "no changes")
            return 0
        if args.cmd == "seed":
            print(json.dumps(seed(settings, n_symbols=args.symbols, days=args.days), indent=2))
            return 0
        store = feature_store(settings)
        views = args.view or check_registry(settings, store)
        if args.cmd == "materialize":
            now = datetime.now(UTC)
            window = window_for(now - timedelta(hours=1), now, overlap=settings.overlap, start=args.start, end=args.end)
            run = full_refresh if args.full_refresh else materialize_window
            for v in views:
                print(json.dumps(run(settings, v, window, store)))
            return 0
        as_of = utc(args.end) if args.end else datetime.now(UTC)
        for v in views:
            report = parity_check(settings, v, as_of, sample=args.sample, store=store)
            print(json.dumps({k: report[k] for k in ("view", "checked", "mismatches")}, default=str))
        return 0
    except GreenlightError as exc:
        print(f"[{exc.kind}] {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

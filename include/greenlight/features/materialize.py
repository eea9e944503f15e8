"""Materialization over an Airflow-owned window, the freshness gate before it, and clearing one view's
online values (a full refresh). Feast's Redis layout: one hash per entity and project, shared by every
view of the entity; each view owns the fields ``mmh3("<view>:<feature>")`` and ``_ts:<view>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from greenlight.errors import ConfigError
from greenlight.features.errors import SourceStaleError, backend_errors, fmt_age
from greenlight.features.registry import feature_store, get_view, source_sql
from greenlight.features.settings import ENTITY, FeatureSettings, utc

log = logging.getLogger("greenlight.features")


def check_freshness(settings: FeatureSettings, views: Sequence, as_of: datetime, max_age: timedelta | None = None):
    """Runbook step 1: the newest source row at or before ``as_of`` must be younger than ``max_age``.

    ``as_of`` is the window end (capped at now), so a backfill checks the data its window needed, not
    today's. Raises :class:`SourceStaleError` with the age; returns one row per distinct source.
    """
    max_age = settings.max_age if max_age is None else max_age
    as_of = min(utc(as_of), datetime.now(UTC))
    report, seen = [], set()
    for view in views:
        from_expr, ts_col = source_sql(view)
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
        log.info("source %s fresh: newest row %s, %s old at %s", name, newest.isoformat(), fmt_age(age), as_of)
    return report


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


def window_stats(settings: FeatureSettings, view, window: Window) -> dict[str, Any]:
    """Rows and distinct entities of the view's source inside the window (what a run should write)."""
    from_expr, ts_col = source_sql(view)
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
    # heavy: Feast, imported here (see the package docstring)
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
    # heavy: Feast, imported here (see the package docstring)
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[ENTITY], entity_values=[Value(string_val=value)])


def redis_key(settings: FeatureSettings, entity: str) -> bytes:
    """The Redis hash Feast keeps an entity's online rows in (shared by every view of that entity)."""
    # heavy: Feast, imported here (see the package docstring)
    from feast.infra.online_stores.helpers import _redis_key

    return _redis_key(settings.project, _entity_key(entity), entity_key_serialization_version=3)


def view_fields(view) -> list[bytes]:
    """The hash fields one feature view owns inside an entity's hash: one per feature + ``_ts:<view>``."""
    # heavy: Feast, imported here (see the package docstring)
    from feast.infra.online_stores.helpers import _mmh3

    return [_mmh3(f"{view.name}:{f.name}") for f in view.features] + [f"_ts:{view.name}".encode()]


def entities_in_window(settings: FeatureSettings, view, window: Window) -> list[str]:
    from_expr, ts_col = source_sql(view)
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

"""Task bodies of the ``feature_materialization`` DAG; each calls the library ``greenlight.features``.

Connections: the Airflow connection ``greenlight_postgres`` (type postgres: host, port, login,
password, schema = database, extra ``{"sslmode": "require"}``) and ``greenlight_redis`` (type redis:
host, port, password, extra ``{"db": 0, "ssl": false}``). When a connection does not exist the env
vars ``GREENLIGHT_PG_URI`` / ``GREENLIGHT_REDIS_URL`` are used. Secrets never reach logs or XCom.
Nothing here touches the Airflow metadata database: connections come through the Task SDK.

``greenlight.features`` is imported inside the task bodies, not at the top: the DAG file imports this
module at parse time, and importing the seven modules of that package there made the
``feature_materialization`` file parse ~0.5 s slower on the shared 2-core machine (median of 3
interleaved DagBag runs: 1.19 s vs 0.59 s per file).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook

from greenlight.dagsupport.runtime import triaged
from greenlight.errors import ConfigError

log = logging.getLogger("greenlight.tasks.features")

PG_CONN_ID = "greenlight_postgres"
REDIS_CONN_ID = "greenlight_redis"
#: Asset alias through which ``parity`` emits one event per verified feature view.
FEATURES_ALIAS = "greenlight-feature-views"


def _connection(conn_id: str):
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - a missing connection means "use the env var"
        return None


def _pg_uri_from_connection(conn) -> str:
    extra = conn.extra_dejson or {}
    auth = quote(conn.login or "postgres", safe="")
    if conn.password:
        auth += ":" + quote(conn.password, safe="")
    database = quote(conn.schema or extra.get("database") or "postgres", safe="")
    sslmode = extra.get("sslmode", "prefer")
    return f"postgresql://{auth}@{conn.host}:{conn.port or 5432}/{database}?sslmode={sslmode}"


def _redis_url_from_connection(conn) -> str:
    extra = conn.extra_dejson or {}
    scheme = "rediss" if str(extra.get("ssl", "false")).lower() in ("true", "1") else "redis"
    auth = ""
    if conn.password:
        auth = quote(conn.login or "", safe="") + ":" + quote(conn.password, safe="") + "@"
    return f"{scheme}://{auth}{conn.host}:{conn.port or 6379}/{int(extra.get('db', 0))}"


def settings(max_age_minutes: float | None = None):
    """Library settings from the Airflow connections, falling back to the env vars."""
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import FeatureSettings

    pg = _connection(PG_CONN_ID)
    rd = _connection(REDIS_CONN_ID)
    result = FeatureSettings.from_env(
        _pg_uri_from_connection(pg) if pg is not None and pg.host else None,
        _redis_url_from_connection(rd) if rd is not None and rd.host else None,
    )
    if max_age_minutes is not None:
        result = result.replace(max_age=timedelta(minutes=max_age_minutes))
    return result


def _window(params: dict[str, Any], data_interval_start, data_interval_end, overlap):
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import window_for

    return window_for(
        data_interval_start,
        data_interval_end,
        overlap=overlap,
        start=params.get("start") or None,
        end=params.get("end") or None,
    )


def _selected_views(settings_, wanted: list[str] | None):
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import load_definitions

    views = {v.name: v for v in load_definitions(settings_.repo_path, settings_.project).feature_views if v.online}
    unknown = sorted(set(wanted or []) - set(views))
    if unknown:
        raise ConfigError(f"unknown feature view(s) {unknown}; the repo defines {sorted(views)}")
    return [views[n] for n in sorted(wanted or views)]


@triaged
def check_source_freshness(params: dict[str, Any], data_interval_start, data_interval_end) -> dict[str, Any]:
    """Runbook step 1 ("verify PostgreSQL has fresh data"): the newest source row at or before the
    window end must be younger than the allowed age, else the run fails (no retry) with the age.

    Also fixes the run's window: ``[data_interval_start - overlap, data_interval_end]``, or the
    ``start``/``end`` params. Every later task uses this window, so a cleared rerun redoes the same one.
    """
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import check_freshness

    s = settings(params.get("max_source_age_minutes"))
    window = _window(params, data_interval_start, data_interval_end, s.overlap)
    views = _selected_views(s, params.get("views"))
    report = check_freshness(s, views, window.end)
    log.info("window %s .. %s (overlap %s)", window.start.isoformat(), window.end.isoformat(), s.overlap)
    return {"window": window.as_dict(), "sources": report}


@triaged
def check_registry(params: dict[str, Any]) -> list[str]:
    """Runbook step 2 ("feast validate"): the deployed registry must equal include/feature_repo.

    A difference fails the run (no retry) with the diff: applying is a reviewed deploy step
    (``greenlight features apply``), never something a scheduled run does by itself.
    Returns the feature views to materialize (the ``views`` param, default all online views).
    """
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import check_registry as check

    s = settings()
    deployed = check(s)
    wanted = [v.name for v in _selected_views(s, params.get("views"))]
    missing = sorted(set(wanted) - set(deployed))
    if missing:
        raise ConfigError(f"feature view(s) {missing} are not online in the deployed registry")
    log.info("registry matches the repo; materializing %s", wanted)
    return wanted


@triaged
def materialize(view: str, window: dict[str, str], *, full_refresh: bool) -> dict[str, Any]:
    """Runbook steps 3-4, for one feature view over the run's window (``store.materialize``).

    ``full_refresh``: first delete this view's online values (its hash fields only, never FLUSHDB)
    for the entities with rows in the window, then materialize. Otherwise a rerun writes nothing new:
    Feast keeps the newer online row per entity.
    """
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import Window, feature_store, get_view, materialize_window, utc, window_stats
    from greenlight.features import full_refresh as refresh

    s = settings()
    w = Window(utc(window["start"]), utc(window["end"]))
    store = feature_store(s)
    result = refresh(s, view, w, store) if full_refresh else materialize_window(s, view, w, store)
    result.update(window_stats(s, get_view(store, view), w))
    log.info(
        "materialized %s %s .. %s: %d source rows, %d entities, newest %s, %.2fs%s",
        view,
        w.start.isoformat(),
        w.end.isoformat(),
        result["rows"],
        result["entities"],
        result["newest"],
        result["duration_s"],
        f", cleared {result['cleared']} entities first" if full_refresh else "",
    )
    return result


@triaged
def parity(result: dict[str, Any], *, run_id: str, sample: int | None = None) -> dict[str, Any]:
    """Runbook step 5 ("verify sync"), automated: sample entities and compare every online feature with
    the offline value it was materialized from (as of the window end). A mismatch fails (no retry)."""
    # local: greenlight.features adds ~0.5 s to parsing the DAG file (see the module docstring)
    from greenlight.features import parity_check, utc

    s = settings()
    report = parity_check(
        s,
        result["view"],
        utc(result["end"]),
        since=utc(result["start"]),
        sample=sample,
        seed=f"{run_id}:{result['view']}",
    )
    log.info(
        "parity ok for %s: %d entities x %d features as of %s (%s)",
        report["view"],
        report["checked"],
        len(report["features"]),
        report["as_of"],
        ", ".join(report["entities"][:10]),
    )
    return {k: v for k, v in report.items() if k != "mismatches"}


def asset_event(result: dict[str, Any], report: dict[str, Any], *, project: str, run_id: str) -> dict[str, Any]:
    """The Asset event of one verified feature view: ``feast://<project>/<view>`` + what the run did."""
    return {
        "uri": f"feast://{project}/{result['view']}",
        "extra": {
            "run_id": run_id,
            "window_start": result["start"],
            "window_end": result["end"],
            "source_rows": result.get("rows"),
            "entities": result.get("entities"),
            "newest_event": result.get("newest"),
            "full_refresh": bool(result.get("full_refresh")),
            "parity_checked": report["checked"],
        },
    }


def project_name() -> str:
    return os.environ.get("GREENLIGHT_FEAST_PROJECT", "greenlight")

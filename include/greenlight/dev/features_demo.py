"""The feature part of ``make demo``: local PostgreSQL + Redis, a day of bars, apply, materialize, parity.

Development only (like the rest of :mod:`greenlight.dev`): it starts servers from pip packages
(:mod:`greenlight.dev.featurestack`) and stops them by PID.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from greenlight.dev.featurestack import start_stack
from greenlight.features import (
    ENTITY,
    FeatureSettings,
    apply_definitions,
    check_freshness,
    check_registry,
    feature_store,
    get_view,
    materialize_window,
    parity_check,
    seed,
    window_for,
)


def run_demo(
    workdir: str | os.PathLike, *, n_symbols: int = 5, keep_running: bool = False, stack=None
) -> dict[str, Any]:
    """``make demo``: start PostgreSQL + Redis, seed a day of bars, apply, materialize the last hour
    (+ overlap) of every view, run the parity check and read one symbol's features back.

    Returns a JSON-able summary. Servers are stopped by PID at the end unless ``keep_running``, or
    unless the caller passed its own running ``stack`` (a ``FeatureStack``; ``make airflow``).
    """
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

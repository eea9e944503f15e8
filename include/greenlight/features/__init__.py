"""Feature materialization PostgreSQL → Feast (Redis), with freshness and parity checks.

This package is the library behind the ``feature_materialization`` DAG, ``greenlight features …``
(:mod:`greenlight.cli.features`), the demo (:mod:`greenlight.dev.features_demo`) and the benchmark. It
does not import Airflow. Feast, psycopg, redis and SQLAlchemy are imported inside the functions that
need them (marked "heavy"): ``from feast import FeatureStore`` alone costs ~5 s and psycopg / redis
seconds more under load (``python -X importtime``), while importing this package must stay cheap —
the CLI imports it for every command.

* :mod:`~greenlight.features.settings` — :class:`FeatureSettings` (env vars / Airflow connections),
  the Feast ``RepoConfig`` built in memory; the settings and their defaults are listed there.
* :mod:`~greenlight.features.errors` — the errors (stale source, registry drift, parity; backend
  unavailable is the only retryable one).
* :mod:`~greenlight.features.registry` — load the repo, diff it with the deployed registry, apply it.
* :mod:`~greenlight.features.materialize` — the freshness gate, the run's window,
  ``store.materialize`` (or the direct write path), clearing one view's online values.
* :mod:`~greenlight.features.parity` — online values equal the offline rows they came from.
* :mod:`~greenlight.features.seed` — demo/benchmark bars.

The names below are re-exported, so ``from greenlight import features; features.parity_check(...)``
works as before the split.
"""

from greenlight.features.errors import (
    FeatureBackendUnavailable,
    FeatureError,
    ParityError,
    RegistryDriftError,
    SourceStaleError,
    backend_errors,
)
from greenlight.features.materialize import (
    Window,
    check_freshness,
    clear_view_keys,
    entities_in_window,
    full_refresh,
    materialize_window,
    redis_key,
    view_fields,
    window_for,
    window_stats,
)
from greenlight.features.parity import parity_check
from greenlight.features.registry import (
    apply_definitions,
    check_registry,
    ensure_schema,
    feature_store,
    get_view,
    load_definitions,
    registry_diff,
    source_sql,
)
from greenlight.features.seed import DEMO_SYMBOLS, generate_bars, insert_bars, seed, symbols
from greenlight.features.settings import (
    BAR,
    ENTITY,
    REGISTRY_SCHEMA,
    REPO_PATH,
    FeatureSettings,
    PgParams,
    RedisParams,
    check_parity_sample,
    utc,
)

__all__ = [
    "BAR",
    "DEMO_SYMBOLS",
    "ENTITY",
    "REGISTRY_SCHEMA",
    "REPO_PATH",
    "FeatureBackendUnavailable",
    "FeatureError",
    "FeatureSettings",
    "ParityError",
    "PgParams",
    "RedisParams",
    "RegistryDriftError",
    "SourceStaleError",
    "Window",
    "apply_definitions",
    "backend_errors",
    "check_freshness",
    "check_parity_sample",
    "check_registry",
    "clear_view_keys",
    "ensure_schema",
    "entities_in_window",
    "feature_store",
    "full_refresh",
    "generate_bars",
    "get_view",
    "insert_bars",
    "load_definitions",
    "materialize_window",
    "parity_check",
    "redis_key",
    "registry_diff",
    "seed",
    "source_sql",
    "symbols",
    "utc",
    "view_fields",
    "window_for",
    "window_stats",
]

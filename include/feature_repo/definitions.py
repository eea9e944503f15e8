"""Feast definitions of greenlight's feature repo: entity ``symbol`` and two feature views.

Both views read PostgreSQL views defined in ``schema.sql`` (the features are computed in SQL, next
to the data). The Feast project name, the stores and the registry are NOT defined here: greenlight
builds the ``RepoConfig`` in code from Airflow connections / env vars (see docs/features.md), so no
host or secret lives in the repo. Deploy changes with ``greenlight features apply``; the
``feature_materialization`` DAG refuses to run while the deployed registry differs from this file.
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Float64
from feast.value_type import ValueType

symbol = Entity(
    name="symbol",
    join_keys=["symbol"],
    value_type=ValueType.STRING,
    description="Instrument ticker, e.g. USDCOP.",
)

technical_source = PostgreSQLSource(
    name="feat_technical_5m",
    table="feat_technical_5m",
    timestamp_field="event_timestamp",
    description="Returns, RSI-9 and rolling volatility per 5-minute bar (PostgreSQL view over ohlcv_5m).",
)

bar_source = PostgreSQLSource(
    name="feat_bar_5m",
    table="feat_bar_5m",
    timestamp_field="event_timestamp",
    description="Close, volume, range and 1-hour VWAP per 5-minute bar (PostgreSQL view over ohlcv_5m).",
)

technical_features = FeatureView(
    name="technical_features",
    entities=[symbol],
    ttl=timedelta(days=3),
    schema=[
        Field(name="ret_1", dtype=Float64, description="log return over one 5-minute bar"),
        Field(name="ret_12", dtype=Float64, description="log return over 12 bars (1 hour)"),
        Field(name="rsi_9", dtype=Float64, description="Cutler's RSI over the last 9 bars"),
        Field(name="volatility_12", dtype=Float64, description="std-dev of the last 12 one-bar log returns"),
    ],
    source=technical_source,
    online=True,
    tags={"team": "platform", "granularity": "5m"},
)

bar_features = FeatureView(
    name="bar_features",
    entities=[symbol],
    ttl=timedelta(days=3),
    schema=[
        Field(name="close", dtype=Float64),
        Field(name="volume", dtype=Float64),
        Field(name="range_pct", dtype=Float64, description="(high - low) / close"),
        Field(name="vwap_12", dtype=Float64, description="volume-weighted close over the last 12 bars"),
    ],
    source=bar_source,
    online=True,
    tags={"team": "platform", "granularity": "5m"},
)

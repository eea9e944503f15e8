"""Benchmark: rows/s materialized PostgreSQL → Redis through greenlight's Feast path, against the limit.

Data: 200 symbols x 1 day of 5-minute bars (57,800 source rows) in ``ohlcv_5m``; the feature view
``technical_features`` (returns, RSI-9, volatility, computed by a PostgreSQL view) over the whole day.

Measured in the same run, each repeated (median), online values of the view cleared before every
repetition so each one really writes:

* ``greenlight`` — ``greenlight.features.materialize_window`` with ``write_path="direct"``: Feast's
  PostgreSQL latest-row query (``pull_latest_from_table_or_query``) into Feast's Redis
  ``online_write_batch`` (timestamp check included), without store.materialize's registry writes;
* ``feast_pull_latest`` — the DAG's default path: ``FeatureStore.materialize(start, end)`` with
  ``pull_latest_features: true`` (PostgreSQL returns only the newest row per entity);
* ``feast_default`` — the same call with Feast's default config (every row read into Python);
* ``raw_limit`` — the physical limit: ``SELECT DISTINCT ON (symbol) ...`` over the same view and one
  Redis pipeline of HSETs of the very same bytes Feast writes (no timestamp reads, no registry).

Checks that all three leave byte-identical Redis hashes, then prints the ratios. Run:

    PYTHONPATH=include .venv/bin/python bench/feature_bench.py [--symbols 200] [--days 1] [--repeat 7]

Uses ``GREENLIGHT_PG_URI`` / ``GREENLIGHT_REDIS_URL`` if set (a fresh database is created on that
server), otherwise starts PostgreSQL and Redis locally and stops them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from greenlight import features as F  # noqa: E402

VIEW = "technical_features"


def raw_write(settings, view, window) -> int:
    """The limit: newest row per entity from PostgreSQL, one pipeline of HSETs of Feast's own bytes."""
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.timestamp_pb2 import Timestamp

    names = [f.name for f in view.features]
    fields = [_mmh3(f"{view.name}:{n}") for n in names]
    ts_field = f"_ts:{view.name}"
    cols = ", ".join(f'"{n}"' for n in names)
    with settings.pg.connect() as conn:
        rows = conn.execute(
            f"SELECT DISTINCT ON (symbol) symbol, event_timestamp, {cols} FROM {view.batch_source.get_table_query_string()} "
            "WHERE event_timestamp BETWEEN %s AND %s ORDER BY symbol, event_timestamp DESC",
            (window.start, window.end),
        ).fetchall()
    empty = Value().SerializeToString()
    client = settings.redis.client()
    with client.pipeline(transaction=False) as pipe:
        for row in rows:
            ts = Timestamp()
            ts.FromDatetime(row[1])
            mapping = {ts_field: ts.SerializeToString()}
            for f, v in zip(fields, row[2:], strict=True):
                mapping[f] = empty if v is None else Value(double_val=v).SerializeToString()
            pipe.hset(F.redis_key(settings, row[0]), mapping=mapping)
        pipe.execute()
    client.close()
    return len(rows)


def snapshot(settings) -> dict:
    client = settings.redis.client()
    out = {k: client.hgetall(k) for k in client.scan_iter(match=b"*" + settings.project.encode(), count=1000)}
    client.close()
    return out


def timed(label, fn, clear, repeat) -> list[float]:
    times = []
    for _ in range(repeat):
        clear()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    print(f"  {label:<14} median {statistics.median(times):.4f}s  min {min(times):.4f}s  ({repeat} runs)", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    stack, workdir = None, None
    pg_uri, redis_url = os.environ.get("GREENLIGHT_PG_URI"), os.environ.get("GREENLIGHT_REDIS_URL")
    if not (pg_uri and redis_url):
        from greenlight.dev.featurestack import start_stack

        workdir = tempfile.mkdtemp(prefix="greenlight-feature-bench-")
        stack = start_stack(workdir)
        pg_uri, redis_url = stack.postgres.uri, stack.redis.url
    base = F.FeatureSettings.from_env(pg_uri, redis_url)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with base.pg.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        settings = base.replace(pg=replace(base.pg, database=name), project=name)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        seeded = F.seed(settings, n_symbols=args.symbols, days=args.days, end=end)
        with settings.pg.connect(autocommit=True) as conn:
            conn.execute("ANALYZE ohlcv_5m")
        F.apply_definitions(settings)
        store = F.feature_store(settings)
        default_store = F.feature_store(settings.replace(pull_latest=False))
        direct = settings.replace(write_path="direct")
        view = F.get_view(store, VIEW)
        window = F.Window(end - timedelta(days=args.days), end)
        stats = F.window_stats(settings, view, window)
        entities = [f"{s}" for s in F.symbols(args.symbols)]
        clear = lambda: F.clear_view_keys(settings, view, entities)  # noqa: E731

        print(f"{stats['rows']} source rows, {stats['entities']} entities, window {window.start} .. {window.end}")
        # Warm up each path once (imports, registry cache, PostgreSQL plan cache).
        for fn in (
            lambda: F.materialize_window(settings, VIEW, window, store),
            lambda: F.materialize_window(settings, VIEW, window, default_store),
            lambda: F.materialize_window(direct, VIEW, window, store),
            lambda: raw_write(settings, view, window),
        ):
            clear()
            fn()
        results = {}
        snaps = {}
        for label, fn in (
            ("raw_limit", lambda: raw_write(settings, view, window)),
            ("greenlight", lambda: F.materialize_window(direct, VIEW, window, store)),
            ("feast_pull_latest", lambda: F.materialize_window(settings, VIEW, window, store)),
            ("feast_default", lambda: F.materialize_window(settings, VIEW, window, default_store)),
        ):
            results[label] = statistics.median(timed(label, fn, clear, args.repeat))
            snaps[label] = snapshot(settings)
        same = all(snap == snaps["raw_limit"] for snap in snaps.values())
        written = len(snaps["greenlight"])
        # Reading back through Feast proves the raw bytes are Feast's format, not just equal blobs.
        readback = store.get_online_features(
            features=[f"{VIEW}:rsi_9"], entity_rows=[{"symbol": s} for s in entities[:5]]
        ).to_dict()
        summary = {
            "source_rows": stats["rows"],
            "entities_written": written,
            "seconds": {k: round(v, 4) for k, v in results.items()},
            "rows_per_s": {k: round(stats["rows"] / v) for k, v in results.items()},
            "ratio_vs_limit": {k: round(v / results["raw_limit"], 2) for k, v in results.items()},
            "identical_online_bytes": same,
            "readback_rsi_9": readback["rsi_9"],
            "seeded": seeded,
        }
        print(json.dumps(summary, indent=2, default=str))
        print(
            f"greenlight: {summary['rows_per_s']['greenlight']:,} rows/s, "
            f"{summary['ratio_vs_limit']['greenlight']}x the raw limit "
            f"({summary['rows_per_s']['raw_limit']:,} rows/s); store.materialize with pull_latest "
            f"{summary['ratio_vs_limit']['feast_pull_latest']}x, Feast default {summary['ratio_vs_limit']['feast_default']}x"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
        return 0 if same else 1
    finally:
        with base.pg.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = base.redis.client()
        for key in client.scan_iter(match=b"*" + name.encode()):
            client.delete(key)
        client.close()
        if stack is not None:
            stack.stop()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

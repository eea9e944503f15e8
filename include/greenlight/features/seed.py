"""Demo and benchmark data: realistic 5-minute OHLCV bars, loaded into ``ohlcv_5m`` with COPY."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from greenlight.features.errors import backend_errors
from greenlight.features.registry import ensure_schema
from greenlight.features.settings import BAR, FeatureSettings, utc

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

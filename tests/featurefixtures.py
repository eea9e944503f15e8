"""Helpers for the feature materialization tests: expected feature values computed in Python from the
raw bars (independently of the SQL views), Redis snapshots, and a per-test database + Feast project."""

from __future__ import annotations

import math
import statistics
from datetime import datetime


def expected_features(rows: list[tuple], symbol: str, as_of: datetime) -> tuple[datetime, dict[str, float | None]]:
    """Every feature of both views for ``symbol``'s newest bar at or before ``as_of``, from raw bars.

    ``rows`` are (symbol, ts, open, high, low, close, volume) as inserted into ``ohlcv_5m``.
    """
    bars = sorted((r for r in rows if r[0] == symbol and r[1] <= as_of), key=lambda r: r[1])
    i = len(bars) - 1
    closes = [b[5] for b in bars]

    def ret(k: int, lag: int) -> float | None:
        return math.log(closes[k] / closes[k - lag]) if k - lag >= 0 else None

    chg = [closes[k] - closes[k - 1] for k in range(i - 8, i + 1)] if i >= 9 else None
    if chg is None:
        rsi = None
    else:
        gains = sum(max(c, 0.0) for c in chg)
        losses = sum(max(-c, 0.0) for c in chg)
        rsi = 100.0 if losses == 0 else 100.0 - 100.0 / (1.0 + gains / losses)
    rets = [ret(k, 1) for k in range(i - 11, i + 1)] if i >= 12 else None
    last12 = bars[max(0, i - 11) : i + 1]
    volume = sum(b[6] for b in last12)
    values = {
        "ret_1": ret(i, 1),
        "ret_12": ret(i, 12),
        "rsi_9": rsi,
        "volatility_12": statistics.stdev(rets) if rets else None,
        "close": closes[i],
        "volume": bars[i][6],
        "range_pct": (bars[i][3] - bars[i][4]) / closes[i],
        "vwap_12": sum(b[5] * b[6] for b in last12) / volume if volume else None,
    }
    return bars[i][1], values


def close_enough(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def project_snapshot(client, project: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every Redis hash of a Feast project (keys end with the project name), field by field."""
    return {key: client.hgetall(key) for key in client.scan_iter(match=b"*" + project.encode(), count=1000)}


def double_value(raw: bytes) -> float:
    from feast.protos.feast.types.Value_pb2 import Value

    value = Value()
    value.ParseFromString(raw)
    return value.double_val


def encode_double(x: float) -> bytes:
    from feast.protos.feast.types.Value_pb2 import Value

    return Value(double_val=x).SerializeToString()

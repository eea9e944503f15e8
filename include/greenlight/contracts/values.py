"""Value helpers shared by the readers, the checks and the GX frame: nulls, dates, JSON scalars, dtypes."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any


def location(bucket: str, key: str) -> str:
    """``s3://bucket/key``: how every reader and check names the place at fault."""
    return f"s3://{bucket}/{key}"


def utc_now(now: dt.datetime | None = None) -> dt.datetime:
    """``now`` as an aware UTC datetime (naive = UTC), or the current time."""
    now = now or dt.datetime.now(dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def dtype_name(value: Any) -> str | None:
    """numpy's name for a dtype spec ('<f4' -> 'float32'), or None when numpy does not know it."""
    # heavy: numpy costs seconds to import, and DAG parsing imports this package (via promotion.config).
    import numpy as np

    try:
        return np.dtype(value).name
    except (TypeError, ValueError):
        return None


def jsonable(value: Any) -> Any:
    """A JSON-friendly scalar: None for NaN/NA/NaT, ISO strings for dates, Python numbers."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return None if value != value else value.isoformat()  # NaT is a datetime unequal to itself
    # heavy: pandas costs seconds to import; only values read by pandas/pyarrow get this far.
    import pandas as pd

    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def is_null(value: Any) -> bool:
    """None, NaN, pandas NA/NaT, or an empty string (CSV cannot tell empty from null)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def as_date(value: Any) -> dt.date | None:
    """A date from a date, a datetime or an ISO string; None for anything else."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def as_utc(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from a datetime, a date (midnight) or an ISO string; None otherwise."""
    if isinstance(value, str) and value.strip():
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return None

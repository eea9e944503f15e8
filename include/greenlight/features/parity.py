"""Parity: online (Redis, read the way inference reads it) equals the offline (PostgreSQL) rows it came from."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from greenlight.features.errors import ParityError, backend_errors
from greenlight.features.registry import feature_store, get_view, source_sql
from greenlight.features.settings import ENTITY, FeatureSettings, check_parity_sample, utc


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
    sample = settings.parity_sample if sample is None else check_parity_sample(sample)
    store = store or feature_store(settings)
    view = get_view(store, view_name)
    as_of = utc(as_of)
    from_expr, ts_col = source_sql(view)
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

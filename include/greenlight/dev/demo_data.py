"""Deterministic, realistic demo artefacts for a QA bucket, built in memory, and an idempotent uploader.

:func:`build_qa_artefacts` returns ``{relative key: (body, content type)}`` for one ``as_of`` date:

* ``weather/processed/corn_stress.zarr/`` - a Zarr v2 store (consolidated ``.zmetadata``, no
  compressor, C order) holding a daily crop-stress index on a small lat/lon grid: the 30 days up to
  and including ``as_of``;
* ``weather/processed/climatology.zarr/`` - a Zarr v3 store (``bytes`` codec only) holding a
  day-of-year temperature climatology on the same grid;
* ``deliveries/csv/`` and ``deliveries/parquet/`` - the commodity yield forecast delivered for
  ``as_of`` plus the previous (weekly) delivery, so the prefixes have history;
* ``usda/nass/`` - NASS-style final yield tables, one file per crop, the last 20 complete years;
* ``wasde/`` - WASDE-style balance-sheet finals, one file per crop.

Values are realistic (trend yields, a drought year, consistent balance sheets) and reproducible:
historical tables and the climatology are seeded by name and year only, so they do not change
from one ``as_of`` to the next; the stress index is seeded per day, so a day keeps its values while
the 30-day window moves. Building twice gives byte-identical artefacts.

``variant`` injects one named defect for the schema gates (see :data:`VARIANTS`); every variant
changes only the current delivery or only the Zarr v2 store, never anything else.

Zarr is not required: both stores are written with numpy and json exactly as zarr-python writes
them (:mod:`greenlight.dev.demo_zarr`, whose ``corn_stress_arrays`` / ``climatology_arrays`` are
re-exported here). Nothing here imports Airflow, and nothing outside ``greenlight.dev`` and the tests
imports this module, so pandas and pyarrow are imported at the top.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from greenlight.dev.demo_zarr import (
    Artefacts,
    as_date,
    climatology_arrays,
    climatology_store,
    corn_stress_arrays,
    corn_stress_store,
    seeded_rng,
)
from greenlight.storage.s3 import list_pages, normalize_etag

__all__ = [
    "CLIMATOLOGY_STORE",
    "CORN_STRESS_STORE",
    "DELIVERY_COLUMNS",
    "DELIVERY_CSV_PREFIX",
    "DELIVERY_PARQUET_PREFIX",
    "DEMO_PREFIXES",
    "NASS_PREFIX",
    "VARIANTS",
    "WASDE_PREFIX",
    "build_qa_artefacts",
    "climatology_arrays",
    "corn_stress_arrays",
    "delivery_rows",
    "seed_bucket",
]

CORN_STRESS_STORE = "weather/processed/corn_stress.zarr/"
CLIMATOLOGY_STORE = "weather/processed/climatology.zarr/"
DELIVERY_CSV_PREFIX = "deliveries/csv/"
DELIVERY_PARQUET_PREFIX = "deliveries/parquet/"
NASS_PREFIX = "usda/nass/"
WASDE_PREFIX = "wasde/"

#: The relative prefixes :func:`build_qa_artefacts` writes under, one per promotable prefix.
DEMO_PREFIXES: list[str] = [
    CORN_STRESS_STORE,
    CLIMATOLOGY_STORE,
    DELIVERY_CSV_PREFIX,
    DELIVERY_PARQUET_PREFIX,
    NASS_PREFIX,
    WASDE_PREFIX,
]

#: What each variant changes; ``clean`` changes nothing.
VARIANTS: dict[str, str] = {
    "clean": "no defect",
    "renamed_column": "current delivery CSV and parquet: forecast_yield -> yield_forecast",
    "dropped_column": "current delivery CSV: the unit column is missing",
    "retyped_column": "current delivery CSV and parquet: forecast_yield is text such as '201.3 bu'",
    "renamed_coordinate": "corn stress Zarr v2 store: coordinate lat -> latitude everywhere",
    "stale": "current delivery CSV and parquet: as_of_date is 30 days before as_of",
}

CT_CSV = "text/csv"
CT_PARQUET = "application/vnd.apache.parquet"

STALE_DAYS = 30
DELIVERY_INTERVAL_DAYS = 7
HISTORY_YEARS = 20
MODEL_VERSION = "2.7.0"
PREVIOUS_MODEL_VERSION = "2.6.3"


# --------------------------------------------------------------------------------------- helpers


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        known = ", ".join(VARIANTS)
        raise ValueError(f"unknown demo data variant {variant!r}; expected one of: {known}")


# ------------------------------------------------------------------------------------ deliveries

# commodity -> (unit, short unit used by the retyped variant, {region: typical yield})
_FORECAST_REGIONS: dict[str, tuple[str, str, dict[str, float]]] = {
    "corn": ("bu/acre", "bu", {"US-IA": 201.0, "US-IL": 205.0, "US-NE": 189.0, "US-MN": 190.0, "US-IN": 192.0}),
    "wheat": ("bu/acre", "bu", {"US-KS": 44.0, "US-ND": 49.0, "US-OK": 32.0, "US-WA": 71.0}),
    "soybeans": ("bu/acre", "bu", {"US-IL": 62.0, "US-IA": 58.0, "US-MN": 50.0, "US-NE": 61.0}),
    "cocoa": ("kg/ha", "kg", {"GH-ASHANTI": 480.0, "GH-WESTERN-NORTH": 520.0, "GH-EASTERN": 430.0}),
}
DELIVERY_COLUMNS = ["as_of_date", "commodity", "region", "forecast_yield", "unit", "model_version"]


def delivery_rows(as_of: dt.date, *, model_version: str = MODEL_VERSION) -> list[dict[str, Any]]:
    """The clean rows of the forecast delivered on ``as_of`` (one per commodity and region)."""
    as_of = as_date(as_of)
    rows = []
    for commodity, (unit, _short, regions) in _FORECAST_REGIONS.items():
        for region, typical in regions.items():
            rng = seeded_rng("forecast", commodity, region, as_of.toordinal())
            value = round(typical * (1.0 + rng.normal(0.0, 0.03)), 1)
            rows.append(
                {
                    "as_of_date": as_of,
                    "commodity": commodity,
                    "region": region,
                    "forecast_yield": value,
                    "unit": unit,
                    "model_version": model_version,
                }
            )
    return rows


def _delivery_frames(as_of: dt.date, variant: str, *, model_version: str) -> tuple[Any, Any]:
    """(CSV frame, parquet table) of one delivery with the variant applied."""
    rows = delivery_rows(as_of, model_version=model_version)
    if variant == "stale":
        stale = as_of - dt.timedelta(days=STALE_DAYS)
        rows = [{**r, "as_of_date": stale} for r in rows]
    short_units = {c: short for c, (_unit, short, _regions) in _FORECAST_REGIONS.items()}
    yield_text = [f"{r['forecast_yield']:.1f} {short_units[r['commodity']]}" for r in rows]

    # CSV
    frame = pd.DataFrame(rows, columns=DELIVERY_COLUMNS)
    frame["as_of_date"] = [r["as_of_date"].isoformat() for r in rows]
    if variant == "retyped_column":
        frame["forecast_yield"] = yield_text
    if variant == "dropped_column":
        frame = frame.drop(columns=["unit"])
    if variant == "renamed_column":
        frame = frame.rename(columns={"forecast_yield": "yield_forecast"})

    # Parquet, with explicit types
    yield_name = "yield_forecast" if variant == "renamed_column" else "forecast_yield"
    yield_type = pa.string() if variant == "retyped_column" else pa.float64()
    yield_values = yield_text if variant == "retyped_column" else [r["forecast_yield"] for r in rows]
    schema = pa.schema(
        [
            pa.field("as_of_date", pa.date32(), nullable=False),
            pa.field("commodity", pa.string(), nullable=False),
            pa.field("region", pa.string(), nullable=False),
            pa.field(yield_name, yield_type, nullable=False),
            pa.field("unit", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
        ]
    )
    table = pa.Table.from_arrays(
        [
            pa.array([r["as_of_date"] for r in rows], type=pa.date32()),
            pa.array([r["commodity"] for r in rows], type=pa.string()),
            pa.array([r["region"] for r in rows], type=pa.string()),
            pa.array(yield_values, type=yield_type),
            pa.array([r["unit"] for r in rows], type=pa.string()),
            pa.array([r["model_version"] for r in rows], type=pa.string()),
        ],
        schema=schema,
    )
    return frame, table


def _csv_bytes(frame: Any) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _parquet_bytes(table: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy", write_statistics=True)
    return buf.getvalue()


def _deliveries(as_of: dt.date, variant: str) -> Artefacts:
    out: Artefacts = {}
    previous = as_of - dt.timedelta(days=DELIVERY_INTERVAL_DAYS)
    # The previous delivery was made before any of today's defects: it is always clean.
    for day, var, version in ((previous, "clean", PREVIOUS_MODEL_VERSION), (as_of, variant, MODEL_VERSION)):
        frame, table = _delivery_frames(day, var, model_version=version)
        stem = f"commodity_forecast_{day.isoformat()}"
        out[f"{DELIVERY_CSV_PREFIX}{stem}.csv"] = (_csv_bytes(frame), CT_CSV)
        out[f"{DELIVERY_PARQUET_PREFIX}{stem}.parquet"] = (_parquet_bytes(table), CT_PARQUET)
    return out


# ------------------------------------------------------------------------------- NASS and WASDE

# crop -> {state: (yield in 2020, harvested acres)}, trend per year, 2012 drought factor
_NASS: dict[str, tuple[dict[str, tuple[float, int]], float, float]] = {
    "corn": (
        {
            "IOWA": (192.0, 13_000_000),
            "ILLINOIS": (195.0, 10_900_000),
            "NEBRASKA": (181.0, 9_600_000),
            "MINNESOTA": (187.0, 7_800_000),
            "INDIANA": (180.0, 5_200_000),
        },
        1.9,
        0.74,
    ),
    "soybeans": (
        {
            "ILLINOIS": (59.0, 10_400_000),
            "IOWA": (54.0, 9_700_000),
            "MINNESOTA": (49.0, 7_300_000),
            "NEBRASKA": (60.0, 5_100_000),
            "INDIANA": (57.0, 5_600_000),
        },
        0.45,
        0.88,
    ),
    "wheat": (
        {
            "KANSAS": (45.0, 6_600_000),
            "NORTH DAKOTA": (48.0, 5_900_000),
            "MONTANA": (40.0, 4_800_000),
            "OKLAHOMA": (32.0, 2_900_000),
            "WASHINGTON": (70.0, 2_200_000),
        },
        0.35,
        0.97,
    ),
}
NASS_COLUMNS = ["year", "state", "commodity", "yield_bu_per_acre", "harvested_acres"]


def _nass_table(crop: str, last_year: int) -> list[dict[str, Any]]:
    states, trend, drought = _NASS[crop]
    rows = []
    for year in range(last_year - HISTORY_YEARS + 1, last_year + 1):
        for state, (yield_2020, acres) in states.items():
            rng = seeded_rng("nass", crop, state, year)  # a (crop, state, year) value never changes
            value = (yield_2020 + trend * (year - 2020)) * (1.0 + rng.normal(0.0, 0.045))
            if year == 2012:
                value *= drought
            harvested = acres * (1.0 + rng.normal(0.0, 0.04))
            rows.append(
                {
                    "year": year,
                    "state": state,
                    "commodity": crop.upper(),
                    "yield_bu_per_acre": round(value, 1),
                    "harvested_acres": int(round(harvested, -4)),
                }
            )
    return rows


# crop -> unit, 2020 production, production trend per year, imports, export share of use, target ending stocks
# (all in million bushels)
_WASDE: dict[str, tuple[str, float, float, float, float, float]] = {
    "corn": ("million bushels", 14_100.0, 150.0, 30.0, 0.16, 1_700.0),
    "soybeans": ("million bushels", 4_200.0, 70.0, 20.0, 0.46, 350.0),
    "wheat": ("million bushels", 1_850.0, -10.0, 110.0, 0.44, 750.0),
}
WASDE_COLUMNS = [
    "marketing_year",
    "commodity",
    "beginning_stocks",
    "production",
    "imports",
    "total_supply",
    "exports",
    "ending_stocks",
    "unit",
]
_WASDE_START_YEAR = 1995  # the stock chain starts here so every window of years is the same series


def _wasde_table(crop: str, last_year: int) -> list[dict[str, Any]]:
    """Closed balance sheets: supply = stocks + production + imports; ending = supply - domestic - exports.

    Total use tracks production and pulls ending stocks back towards a typical level, so the
    stocks chain (this year's beginning = last year's ending) stays plausible over any span.
    """
    unit, prod_2020, trend, imports_typical, export_share, target = _WASDE[crop]
    rows = []
    stocks = round(target)
    for year in range(_WASDE_START_YEAR, last_year + 1):
        rng = seeded_rng("wasde", crop, year)
        shock = 0.87 if year == 2012 else 1.0  # the 2012 drought
        production = round((prod_2020 + trend * (year - 2020)) * (1.0 + rng.normal(0.0, 0.04)) * shock)
        imports = round(imports_typical * (1.0 + rng.normal(0.0, 0.2)))
        supply = stocks + production + imports
        use = production + imports + 0.5 * (stocks - target) + rng.normal(0.0, 0.04) * production
        use = round(min(use, supply - 0.04 * use))  # never draw stocks below ~4% of use
        exports = round(use * export_share * (1.0 + rng.normal(0.0, 0.05)))
        domestic = use - exports
        ending = supply - domestic - exports
        if year > last_year - HISTORY_YEARS:
            rows.append(
                {
                    "marketing_year": f"{year}/{(year + 1) % 100:02d}",
                    "commodity": crop.upper(),
                    "beginning_stocks": stocks,
                    "production": production,
                    "imports": imports,
                    "total_supply": supply,
                    "exports": exports,
                    "ending_stocks": ending,
                    "unit": unit,
                }
            )
        stocks = ending
    return rows


def _history_tables(as_of: dt.date) -> Artefacts:
    out: Artefacts = {}
    nass_last = as_of.year - 1  # final state yields for year Y are published early in Y+1
    wasde_last = as_of.year - 2  # marketing year Y/Y+1 is final once it has closed and been revised
    for crop in _NASS:
        frame = pd.DataFrame(_nass_table(crop, nass_last), columns=NASS_COLUMNS)
        out[f"{NASS_PREFIX}yields_{crop}.csv"] = (_csv_bytes(frame), CT_CSV)
    for crop in _WASDE:
        frame = pd.DataFrame(_wasde_table(crop, wasde_last), columns=WASDE_COLUMNS)
        out[f"{WASDE_PREFIX}finals_{crop}.csv"] = (_csv_bytes(frame), CT_CSV)
    return out


# ------------------------------------------------------------------------------------ public API


def build_qa_artefacts(as_of: dt.date, *, variant: str = "clean") -> dict[str, tuple[bytes, str]]:
    """All demo artefacts for ``as_of``: relative key -> (body, content type), keys sorted.

    ``variant`` is one of :data:`VARIANTS`; anything else raises ``ValueError``.
    """
    _check_variant(variant)
    as_of = as_date(as_of)
    out: Artefacts = {}
    for rel, item in corn_stress_store(as_of, variant).items():
        out[CORN_STRESS_STORE + rel] = item
    for rel, item in climatology_store().items():
        out[CLIMATOLOGY_STORE + rel] = item
    out.update(_deliveries(as_of, variant))
    out.update(_history_tables(as_of))
    return dict(sorted(out.items()))


def _dir_prefix(value: str, what: str) -> str:
    """'' or a relative key prefix ending in '/'; rejects absolute and '..' paths."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"{what} {value!r} must be a relative path without '..'")
    if value and not value.endswith("/"):
        value += "/"
    return value


def _covering_prefixes(prefixes: Iterable[str]) -> list[str]:
    """The smallest set of prefixes whose listings include every given prefix's listing."""
    kept: list[str] = []
    for p in sorted(set(prefixes)):
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return kept


def _list_etags(client, bucket: str, prefix: str) -> dict[str, str]:
    """key -> normalised ETag for every object under ``prefix`` (all ListObjectsV2 pages)."""
    return {
        obj["Key"]: normalize_etag(obj.get("ETag"))
        for page in list_pages(client, bucket, prefix)
        for obj in page.get("Contents", ())
    }


def seed_bucket(
    client,
    bucket: str,
    artefacts: dict[str, tuple[bytes, str]],
    *,
    prefix: str = "",
    delete_extra_under: list[str] | None = None,
) -> dict[str, int]:
    """Upload ``artefacts`` under ``prefix`` in ``bucket``, skipping objects that already hold the same bytes.

    An object counts as unchanged when its listed ETag equals the MD5 of the body (true for
    single-part uploads without SSE-KMS; any other ETag is treated as different and re-uploaded).
    A content type change alone is not detected. ``delete_extra_under`` lists sub-prefixes
    (relative to ``prefix``, treated as directories) in which objects that are not artefacts are
    deleted. Returns ``{"uploaded": n, "unchanged": n, "deleted": n}``; a second identical call
    uploads and deletes nothing.
    """
    base = _dir_prefix(prefix, "prefix")
    subs = [_dir_prefix(s, "delete_extra_under entry") for s in (delete_extra_under or [])]
    wanted: dict[str, tuple[bytes, str]] = {}
    for rel, (body, content_type) in artefacts.items():
        if not rel or rel.startswith("/") or rel.endswith("/") or ".." in rel.split("/"):
            raise ValueError(f"artefact key {rel!r} must be a relative object key")
        wanted[base + rel] = (bytes(body), content_type)

    parents = [key.rsplit("/", 1)[0] + "/" if "/" in key else base for key in wanted]
    existing: dict[str, str] = {}
    for root in _covering_prefixes([*parents, *(base + s for s in subs)]):
        existing.update(_list_etags(client, bucket, root))

    counts = {"uploaded": 0, "unchanged": 0, "deleted": 0}
    for key, (body, content_type) in sorted(wanted.items()):
        digest = hashlib.md5(body, usedforsecurity=False)
        if existing.get(key) == digest.hexdigest():
            counts["unchanged"] += 1
            continue
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ContentMD5=base64.b64encode(digest.digest()).decode("ascii"),
        )
        counts["uploaded"] += 1

    extra = sorted(k for k in existing if k not in wanted and any(k.startswith(base + s) for s in subs))
    for start in range(0, len(extra), 1000):
        batch = extra[start : start + 1000]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            shown = "; ".join(f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in errors[:5])
            raise RuntimeError(f"seed_bucket: {len(errors)} delete(s) failed in s3://{bucket}/: {shown}")
        counts["deleted"] += len(batch)
    return counts

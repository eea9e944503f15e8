"""The demo's two Zarr stores, written with numpy and json exactly as zarr-python writes them.

* ``corn_stress_store`` - Zarr v2 (consolidated ``.zmetadata``, no compressor, C order): a daily
  crop-stress index on a small lat/lon grid, the 30 days up to and including ``as_of``;
* ``climatology_store`` - Zarr v3 (``bytes`` codec only): a day-of-year temperature climatology.

Chunks are raw little-endian, edge chunks padded to the full chunk shape with the fill value. Each
stress day is seeded by its date, the climatology by its name, so building twice gives the same
bytes. :mod:`greenlight.dev.demo_data` assembles these with the tables into the QA bucket.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

Artefacts = dict[str, tuple[bytes, str]]
CT_JSON = "application/json"
CT_BINARY = "application/octet-stream"

STRESS_WINDOW_DAYS = 30
_EPOCH = dt.date(1970, 1, 1)
_NAT = int(np.iinfo(np.int64).min)  # numpy/pandas NaT sentinel: the fill value of the int64 time axis
# A small grid over the US corn belt (0.5 degree spacing).
GRID_LAT = np.round(np.arange(8) * 0.5 + 40.0, 6)  # 40.0 .. 43.5
GRID_LON = np.round(np.arange(10) * 0.5 - 96.0, 6)  # -96.0 .. -91.5
STRESS_CHUNKS = (12, 4, 5)  # 30 days -> 3 time chunks, the last one padded
CLIM_DOY = np.arange(1, 367, dtype=np.int32)
CLIM_CHUNKS = (100, 4, 5)  # 366 days -> 4 doy chunks, the last one padded
# Grid cells that are open water: masked (NaN) in every stress field.
_WATER_CELLS = ((7, 9), (7, 8), (6, 9))


# --------------------------------------------------------------------------------------- helpers
def _stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (``hash()`` of a str is salted per process)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode("utf-8"))


def seeded_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by ``parts`` alone: the same values in every process and run."""
    return np.random.default_rng(_stable_seed(*parts))


def as_date(as_of: Any) -> dt.date:
    """The date of a date or datetime; anything else is a ``TypeError``."""
    if isinstance(as_of, dt.datetime):
        return as_of.date()
    if isinstance(as_of, dt.date):
        return as_of
    raise TypeError(f"as_of must be a datetime.date, got {type(as_of).__name__}")


def _json_v2(obj: Any) -> bytes:
    """JSON exactly as zarr-python 2 writes metadata documents."""
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=True, separators=(",", ": "), allow_nan=False).encode(
        "ascii"
    )


def _json_v3(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=True, allow_nan=False).encode("ascii")


def _json_fill(value: float | int) -> float | int | str:
    """Zarr's JSON encoding of a fill value: NaN and infinities are strings."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return value


def _chunk_blocks(
    data: np.ndarray, chunks: tuple[int, ...], fill: float | int
) -> Iterable[tuple[tuple[int, ...], bytes]]:
    """Every chunk of ``data`` as (grid index, raw little-endian C-order bytes of the full chunk).

    Edge chunks are padded to the full chunk shape with ``fill``, as Zarr v2 and v3 both store them.
    """
    grid = [math.ceil(n / c) for n, c in zip(data.shape, chunks, strict=True)]
    little = data.dtype.newbyteorder("<")
    for index in itertools.product(*(range(g) for g in grid)):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, data.shape, strict=True))
        block = np.full(chunks, fill, dtype=little)
        part = data[region]
        block[tuple(slice(0, s) for s in part.shape)] = part
        yield index, np.ascontiguousarray(block).tobytes(order="C")


# ------------------------------------------------------------------------------ weather arrays


def corn_stress_arrays(as_of: dt.date) -> dict[str, np.ndarray]:
    """The arrays of the corn stress store: ``stress_index`` (time, lat, lon), ``time``, ``lat``, ``lon``.

    ``stress_index`` is a 0..1 crop-stress index (float32): seasonal heat/dryness stress, higher in
    the drier west and south, with day-to-day weather noise; open-water cells are NaN. Each day is
    seeded by its date, so a day has the same field whatever ``as_of`` window it falls in.
    """
    as_of = as_date(as_of)
    days = [as_of - dt.timedelta(days=STRESS_WINDOW_DAYS - 1 - i) for i in range(STRESS_WINDOW_DAYS)]
    lat2d, lon2d = np.meshgrid(GRID_LAT, GRID_LON, indexing="ij")
    # Drier and hotter to the west and south.
    spatial = 0.10 * (lon2d.max() - lon2d) / np.ptp(GRID_LON) + 0.08 * (lat2d.max() - lat2d) / np.ptp(GRID_LAT)
    fields = []
    for day in days:
        doy = day.timetuple().tm_yday
        seasonal = max(0.0, math.sin(2 * math.pi * (doy - 110) / 365.25))  # peaks mid/late July
        rng = seeded_rng("corn_stress", day.toordinal())
        # A day-wide weather anomaly plus smooth-ish local noise.
        anomaly = rng.normal(0.0, 0.06)
        noise = rng.normal(0.0, 0.04, size=lat2d.shape)
        field = 0.12 + 0.45 * seasonal + spatial + anomaly + noise
        fields.append(np.clip(field, 0.0, 1.0))
    stress = np.stack(fields).astype(np.float32)
    for i, j in _WATER_CELLS:
        stress[:, i, j] = np.nan
    time = np.array([(d - _EPOCH).days for d in days], dtype=np.int64)
    return {
        "stress_index": stress,
        "time": time,
        "lat": GRID_LAT.astype(np.float64),
        "lon": GRID_LON.astype(np.float64),
    }


def climatology_arrays() -> dict[str, np.ndarray]:
    """The arrays of the climatology store: ``tmax_clim``/``tmin_clim`` (doy, lat, lon), ``doy``, ``lat``, ``lon``.

    A 1991-2020-style daily temperature climatology in degC (float32). It does not depend on the
    date: a materialised climatology is rebuilt rarely, so nightly runs see it unchanged.
    """
    lat2d, lon2d = np.meshgrid(GRID_LAT, GRID_LON, indexing="ij")
    doy = CLIM_DOY.astype(np.float64)[:, None, None]
    season = np.sin(2 * np.pi * (doy - 105.0) / 365.25)
    rng = seeded_rng("climatology")
    local = rng.normal(0.0, 0.3, size=lat2d.shape)  # fixed station/terrain offsets
    tmax = 15.5 + 15.0 * season - 0.9 * (lat2d - 40.0) - 0.15 * (lon2d + 94.0) + local
    diurnal = 11.0 + 1.5 * np.cos(2 * np.pi * (doy - 200.0) / 365.25) + 0.2 * (lat2d - 40.0)
    tmin = tmax - diurnal
    return {
        "tmax_clim": np.round(tmax, 2).astype(np.float32),
        "tmin_clim": np.round(tmin, 2).astype(np.float32),
        "doy": CLIM_DOY.copy(),
        "lat": GRID_LAT.astype(np.float64),
        "lon": GRID_LON.astype(np.float64),
    }


# ---------------------------------------------------------------------------------- Zarr v2 store


def zarr_v2_store(
    arrays: Mapping[str, tuple[np.ndarray, tuple[int, ...], float | int, dict[str, Any]]],
    group_attrs: dict[str, Any],
) -> Artefacts:
    """A consolidated Zarr v2 group: name -> (data, chunks, fill value, attrs incl. _ARRAY_DIMENSIONS)."""
    out: Artefacts = {}
    meta: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": group_attrs}
    for name, (data, chunks, fill, attrs) in arrays.items():
        zarray = {
            "chunks": list(chunks),
            "compressor": None,
            "dimension_separator": ".",
            "dtype": data.dtype.newbyteorder("<").str,
            "fill_value": _json_fill(fill),
            "filters": None,
            "order": "C",
            "shape": list(data.shape),
            "zarr_format": 2,
        }
        meta[f"{name}/.zarray"] = zarray
        meta[f"{name}/.zattrs"] = attrs
        for index, body in _chunk_blocks(data, chunks, fill):
            out[f"{name}/{'.'.join(map(str, index))}"] = (body, CT_BINARY)
    for key, doc in meta.items():
        out[key] = (_json_v2(doc), CT_JSON)
    out[".zmetadata"] = (_json_v2({"metadata": meta, "zarr_consolidated_format": 1}), CT_JSON)
    return out


def corn_stress_store(as_of: dt.date, variant: str) -> Artefacts:
    """The Zarr v2 corn stress store (relative key -> (body, content type)); ``variant`` is one of
    :data:`greenlight.dev.demo_data.VARIANTS` (only ``renamed_coordinate`` changes it)."""
    data = corn_stress_arrays(as_of)
    lat = "latitude" if variant == "renamed_coordinate" else "lat"
    nan = float("nan")
    arrays = {
        "stress_index": (
            data["stress_index"],
            STRESS_CHUNKS,
            nan,
            {
                "_ARRAY_DIMENSIONS": ["time", lat, "lon"],
                "long_name": "crop stress index",
                "units": "1",
                "valid_range": [0.0, 1.0],
                "crop": "corn",
            },
        ),
        "time": (
            data["time"],
            (len(data["time"]),),
            _NAT,
            {
                "_ARRAY_DIMENSIONS": ["time"],
                "standard_name": "time",
                "units": "days since 1970-01-01",
                "calendar": "proleptic_gregorian",
            },
        ),
        lat: (
            data["lat"],
            (len(data["lat"]),),
            nan,
            {"_ARRAY_DIMENSIONS": [lat], "standard_name": "latitude", "units": "degrees_north"},
        ),
        "lon": (
            data["lon"],
            (len(data["lon"]),),
            nan,
            {"_ARRAY_DIMENSIONS": ["lon"], "standard_name": "longitude", "units": "degrees_east"},
        ),
    }
    group_attrs = {
        "Conventions": "CF-1.8",
        "title": "Daily corn crop-stress index",
        "as_of": as_of.isoformat(),
        "source": "greenlight demo data",
    }
    return zarr_v2_store(arrays, group_attrs)


# ---------------------------------------------------------------------------------- Zarr v3 store


def _v3_data_type(dtype: np.dtype) -> str:
    return np.dtype(dtype).name  # float32, float64, int32, int64 ...


def _zarr_v3_store(
    arrays: Mapping[str, tuple[np.ndarray, tuple[int, ...], float | int, list[str], dict[str, Any]]],
    group_attrs: dict[str, Any],
) -> Artefacts:
    """A Zarr v3 group with inline consolidated metadata: name -> (data, chunks, fill, dims, attrs)."""
    out: Artefacts = {}
    consolidated: dict[str, Any] = {}
    for name, (data, chunks, fill, dims, attrs) in arrays.items():
        meta = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": list(data.shape),
            "data_type": _v3_data_type(data.dtype),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": _json_fill(fill),
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "attributes": attrs,
            "dimension_names": list(dims),
            "storage_transformers": [],
        }
        consolidated[name] = meta
        out[f"{name}/zarr.json"] = (_json_v3(meta), CT_JSON)
        for index, body in _chunk_blocks(data, chunks, fill):
            out[f"{name}/c/{'/'.join(map(str, index))}"] = (body, CT_BINARY)
    root = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": group_attrs,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": consolidated},
    }
    out["zarr.json"] = (_json_v3(root), CT_JSON)
    return out


def climatology_store() -> Artefacts:
    """The Zarr v3 climatology store (relative key -> (body, content type)); the same for every date."""
    data = climatology_arrays()
    nan = float("nan")
    grid_dims = ["doy", "lat", "lon"]
    arrays = {
        "tmax_clim": (
            data["tmax_clim"],
            CLIM_CHUNKS,
            nan,
            grid_dims,
            {"long_name": "climatological daily maximum temperature", "units": "degC"},
        ),
        "tmin_clim": (
            data["tmin_clim"],
            CLIM_CHUNKS,
            nan,
            grid_dims,
            {"long_name": "climatological daily minimum temperature", "units": "degC"},
        ),
        "doy": (data["doy"], (len(data["doy"]),), 0, ["doy"], {"long_name": "day of year", "units": "1"}),
        "lat": (
            data["lat"],
            (len(data["lat"]),),
            nan,
            ["lat"],
            {"standard_name": "latitude", "units": "degrees_north"},
        ),
        "lon": (
            data["lon"],
            (len(data["lon"]),),
            nan,
            ["lon"],
            {"standard_name": "longitude", "units": "degrees_east"},
        ),
    }
    group_attrs = {
        "Conventions": "CF-1.8",
        "title": "Daily temperature climatology",
        "climatology_period": "1991-2020",
        "source": "greenlight demo data",
    }
    return _zarr_v3_store(arrays, group_attrs)

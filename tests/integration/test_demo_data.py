"""Tests for greenlight.dev.demo_data: real readers for CSV/parquet, tiny independent Zarr v2/v3 readers."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from greenlight.dev import demo_data
from greenlight.dev.demo_data import DEMO_PREFIXES, build_qa_artefacts, seed_bucket

AS_OF = dt.date(2026, 5, 7)
PREV = AS_OF - dt.timedelta(days=7)
V2 = "weather/processed/corn_stress.zarr/"
V3 = "weather/processed/climatology.zarr/"
CUR_CSV = f"deliveries/csv/commodity_forecast_{AS_OF.isoformat()}.csv"
CUR_PARQUET = f"deliveries/parquet/commodity_forecast_{AS_OF.isoformat()}.parquet"
PREV_CSV = f"deliveries/csv/commodity_forecast_{PREV.isoformat()}.csv"
PREV_PARQUET = f"deliveries/parquet/commodity_forecast_{PREV.isoformat()}.parquet"
DELIVERY_COLUMNS = ["as_of_date", "commodity", "region", "forecast_yield", "unit", "model_version"]


@pytest.fixture(scope="module")
def clean() -> dict[str, tuple[bytes, str]]:
    return build_qa_artefacts(AS_OF)


def _csv(artefacts, key) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(artefacts[key][0]))


def _parquet(artefacts, key) -> pa.Table:
    return pq.read_table(io.BytesIO(artefacts[key][0]))


def _json(artefacts, key):
    return json.loads(artefacts[key][0])


# ------------------------------------------------------------------ independent tiny Zarr readers


def _fill(value, dtype: np.dtype):
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
    return np.dtype(dtype).type(value)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def _assemble(store: dict[str, bytes], shape, chunks, dtype, fill, key_of) -> np.ndarray:
    """Read every chunk (checking presence, size and edge padding) into one array."""
    out = np.empty(shape, dtype=dtype)
    grid = [math.ceil(n / c) for n, c in zip(shape, chunks, strict=True)]
    for index in itertools.product(*(range(g) for g in grid)):
        key = key_of(index)
        assert key in store, f"missing chunk {key}"
        raw = store[key]
        assert len(raw) == math.prod(chunks) * np.dtype(dtype).itemsize, key
        block = np.frombuffer(raw, dtype=dtype).reshape(chunks, order="C")
        valid = tuple(min(c, n - i * c) for i, c, n in zip(index, chunks, shape, strict=True))
        inner = tuple(slice(0, v) for v in valid)
        padding = np.ones(chunks, dtype=bool)
        padding[inner] = False
        assert _same(block[padding], np.full(int(padding.sum()), fill, dtype=dtype)), f"{key}: padding is not fill"
        region = tuple(slice(i * c, i * c + v) for i, c, v in zip(index, chunks, valid, strict=True))
        out[region] = block[inner]
    return out


def read_zarr_v2(artefacts, root: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(consolidated metadata, {array name: data}) of a consolidated, uncompressed Zarr v2 group."""
    store = {k[len(root) :]: body for k, (body, _ct) in artefacts.items() if k.startswith(root)}
    consolidated = json.loads(store[".zmetadata"])
    assert consolidated["zarr_consolidated_format"] == 1
    meta = consolidated["metadata"]
    assert meta[".zgroup"] == {"zarr_format": 2}
    arrays = {}
    for key, zarray in meta.items():
        if not key.endswith("/.zarray"):
            continue
        name = key[: -len("/.zarray")]
        assert zarray["zarr_format"] == 2 and zarray["compressor"] is None and zarray["filters"] is None
        assert zarray["order"] == "C"
        dtype = np.dtype(zarray["dtype"])
        assert dtype.byteorder in ("<", "|", "=") and zarray["dtype"][0] in "<|"
        sep = zarray.get("dimension_separator", ".")
        fill = _fill(zarray["fill_value"], dtype)
        arrays[name] = _assemble(
            store,
            tuple(zarray["shape"]),
            tuple(zarray["chunks"]),
            dtype,
            fill,
            lambda index, name=name, sep=sep: f"{name}/{sep.join(map(str, index))}",
        )
        # The chunk files are exactly the grid: nothing extra.
        grid = [math.ceil(n / c) for n, c in zip(zarray["shape"], zarray["chunks"], strict=True)]
        chunk_keys = {k for k in store if k.startswith(name + "/") and not k.rsplit("/", 1)[1].startswith(".")}
        assert len(chunk_keys) == math.prod(grid), name
    return meta, arrays


_V3_TYPES = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8", "int16": "<i2"}


def read_zarr_v3(artefacts, root: str) -> tuple[dict, dict[str, dict], dict[str, np.ndarray]]:
    """(root metadata, {array: zarr.json}, {array: data}) of a Zarr v3 group with only the bytes codec."""
    store = {k[len(root) :]: body for k, (body, _ct) in artefacts.items() if k.startswith(root)}
    group = json.loads(store["zarr.json"])
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    metas, arrays = {}, {}
    for key in store:
        if not key.endswith("/zarr.json"):
            continue
        name = key[: -len("/zarr.json")]
        meta = json.loads(store[key])
        assert meta["zarr_format"] == 3 and meta["node_type"] == "array"
        assert meta["codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}]
        assert meta["chunk_grid"]["name"] == "regular"
        assert meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
        assert len(meta["dimension_names"]) == len(meta["shape"])
        dtype = np.dtype(_V3_TYPES[meta["data_type"]])
        chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        arrays[name] = _assemble(
            store,
            tuple(meta["shape"]),
            chunks,
            dtype,
            _fill(meta["fill_value"], dtype),
            lambda index, name=name: f"{name}/c/{'/'.join(map(str, index))}",
        )
        grid = [math.ceil(n / c) for n, c in zip(meta["shape"], chunks, strict=True)]
        assert len([k for k in store if k.startswith(f"{name}/c/")]) == math.prod(grid), name
        metas[name] = meta
    return group, metas, arrays


# --------------------------------------------------------------------------------------- layout


def test_layout_and_content_types(clean):
    assert DEMO_PREFIXES == [
        "weather/processed/corn_stress.zarr/",
        "weather/processed/climatology.zarr/",
        "deliveries/csv/",
        "deliveries/parquet/",
        "usda/nass/",
        "wasde/",
    ]
    for key, (body, content_type) in clean.items():
        assert isinstance(body, bytes) and body, key
        assert sum(key.startswith(p) for p in DEMO_PREFIXES) == 1, key
        expected = {
            ".csv": "text/csv",
            ".parquet": "application/vnd.apache.parquet",
            ".json": "application/json",
            ".zgroup": "application/json",
            ".zattrs": "application/json",
            ".zarray": "application/json",
            ".zmetadata": "application/json",
        }
        suffix = next((s for s in expected if key.endswith(s)), None)
        assert content_type == (expected[suffix] if suffix else "application/octet-stream"), key
    for prefix in DEMO_PREFIXES:
        assert any(k.startswith(prefix) for k in clean), prefix
    assert {CUR_CSV, PREV_CSV, CUR_PARQUET, PREV_PARQUET} <= set(clean)
    assert {f"usda/nass/yields_{c}.csv" for c in ("corn", "soybeans", "wheat")} <= set(clean)
    assert {f"wasde/finals_{c}.csv" for c in ("corn", "soybeans", "wheat")} <= set(clean)
    # Metadata documents are JSON without bare NaN (strict parsers reject it).
    for key, (body, content_type) in clean.items():
        if content_type == "application/json":
            json.loads(body, parse_constant=lambda c, key=key: pytest.fail(f"{key}: bare {c} in JSON"))


# ---------------------------------------------------------------------------------- deliveries


def test_delivery_csv(clean):
    for key, day in ((CUR_CSV, AS_OF), (PREV_CSV, PREV)):
        frame = _csv(clean, key)
        assert list(frame.columns) == DELIVERY_COLUMNS
        assert frame["forecast_yield"].dtype == np.float64
        assert (frame["as_of_date"] == day.isoformat()).all()
        assert set(frame["commodity"]) == {"corn", "wheat", "soybeans", "cocoa"}
        assert not frame.duplicated(["commodity", "region"]).any()
        assert frame.notna().all().all()
        bushels = frame[frame["unit"] == "bu/acre"]
        assert set(bushels["commodity"]) == {"corn", "wheat", "soybeans"}
        corn = frame[frame["commodity"] == "corn"]["forecast_yield"]
        assert corn.between(150, 240).all()
        soy = frame[frame["commodity"] == "soybeans"]["forecast_yield"]
        assert soy.between(40, 75).all()
        cocoa = frame[frame["commodity"] == "cocoa"]
        assert (cocoa["unit"] == "kg/ha").all() and cocoa["forecast_yield"].between(300, 700).all()
    assert not _csv(clean, CUR_CSV)["forecast_yield"].equals(_csv(clean, PREV_CSV)["forecast_yield"])


def test_delivery_parquet_types_and_content(clean):
    expected = pa.schema(
        [
            ("as_of_date", pa.date32()),
            ("commodity", pa.string()),
            ("region", pa.string()),
            ("forecast_yield", pa.float64()),
            ("unit", pa.string()),
            ("model_version", pa.string()),
        ]
    )
    for parquet_key, csv_key in ((CUR_PARQUET, CUR_CSV), (PREV_PARQUET, PREV_CSV)):
        table = _parquet(clean, parquet_key)
        assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in expected]
        assert not any(f.nullable for f in table.schema)  # every delivery column is required
        frame = _csv(clean, csv_key)
        as_table = table.to_pandas()
        as_table["as_of_date"] = [d.isoformat() for d in as_table["as_of_date"]]
        pd.testing.assert_frame_equal(as_table, frame, check_dtype=False)


def test_nass_yields(clean):
    last = AS_OF.year - 1
    for crop, low, high in (("corn", 100, 240), ("soybeans", 30, 75), ("wheat", 20, 95)):
        frame = _csv(clean, f"usda/nass/yields_{crop}.csv")
        assert list(frame.columns) == ["year", "state", "commodity", "yield_bu_per_acre", "harvested_acres"]
        assert sorted(frame["year"].unique()) == list(range(last - 19, last + 1))
        assert frame.groupby("year")["state"].nunique().eq(frame["state"].nunique()).all()
        assert (frame["commodity"] == crop.upper()).all()
        assert frame["yield_bu_per_acre"].between(low, high).all(), crop
        assert frame["harvested_acres"].between(1_000_000, 15_000_000).all()
        assert frame["harvested_acres"].dtype == np.int64
        # Yields trend upwards and 2012 was a drought year.
        by_year = frame.groupby("year")["yield_bu_per_acre"].mean()
        assert by_year.loc[last - 4 :].mean() > by_year.loc[: last - 15].mean()
        if crop == "corn":
            assert by_year.loc[2012] == by_year.min()


def test_wasde_finals_balance(clean):
    columns = [
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
    for crop in ("corn", "soybeans", "wheat"):
        frame = _csv(clean, f"wasde/finals_{crop}.csv")
        assert list(frame.columns) == columns
        assert len(frame) == 20
        assert frame["marketing_year"].iloc[-1] == f"{AS_OF.year - 2}/{(AS_OF.year - 1) % 100:02d}"
        assert all(re.fullmatch(r"\d{4}/\d{2}", y) for y in frame["marketing_year"])
        assert (frame["total_supply"] == frame[["beginning_stocks", "production", "imports"]].sum(axis=1)).all()
        assert (frame["beginning_stocks"].iloc[1:].to_numpy() == frame["ending_stocks"].iloc[:-1].to_numpy()).all()
        numeric = frame[columns[2:-1]]
        assert (numeric > 0).all().all()
        assert (frame["ending_stocks"] < frame["total_supply"] - frame["exports"]).all()  # domestic use > 0
        assert (frame["unit"] == "million bushels").all()
    corn = _csv(clean, "wasde/finals_corn.csv")
    assert corn["production"].between(9_000, 17_000).all()


# ---------------------------------------------------------------------------------------- Zarr v2


def test_zarr_v2_store(clean):
    meta, arrays = read_zarr_v2(clean, V2)
    expected = demo_data.corn_stress_arrays(AS_OF)
    assert set(arrays) == {"stress_index", "time", "lat", "lon"}
    for name, data in arrays.items():
        assert _same(data, expected[name]), name
    # Every metadata document on its own equals its consolidated copy.
    for key, doc in meta.items():
        assert _json(clean, V2 + key) == doc, key
    zarray = meta["stress_index/.zarray"]
    assert zarray["dtype"] == "<f4" and zarray["shape"] == [30, 8, 10] and zarray["fill_value"] == "NaN"
    assert meta["stress_index/.zattrs"]["_ARRAY_DIMENSIONS"] == ["time", "lat", "lon"]
    assert meta["time/.zarray"]["dtype"] == "<i8"
    assert meta["time/.zattrs"]["units"].startswith("days since 1970-01-01")
    assert meta["lat/.zarray"]["dtype"] == "<f8" and meta["lon/.zarray"]["dtype"] == "<f8"
    assert all(meta[f"{n}/.zarray"]["fill_value"] is not None for n in arrays)
    # Several chunk files, an uneven time axis (30 = 12 + 12 + 6).
    assert {k for k in clean if k.startswith(V2 + "stress_index/") and "/." not in k} == {
        f"{V2}stress_index/{t}.{y}.{x}" for t in range(3) for y in range(2) for x in range(2)
    }
    # Decode one edge chunk by hand.
    block = np.frombuffer(clean[V2 + "stress_index/2.1.0"][0], dtype="<f4").reshape(12, 4, 5)
    assert _same(block[:6], expected["stress_index"][24:30, 4:8, 0:5])
    assert np.isnan(block[6:]).all()
    # Coordinates and values are what they should be.
    days = [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in arrays["time"]]
    assert days[-1] == AS_OF and days[0] == AS_OF - dt.timedelta(days=29)
    assert np.all(np.diff(arrays["lat"]) > 0) and 35 < arrays["lat"].mean() < 45
    assert -100 < arrays["lon"].mean() < -85
    stress = arrays["stress_index"]
    assert np.isnan(stress).any() and np.nanmin(stress) >= 0 and np.nanmax(stress) <= 1
    assert np.isnan(stress).all(axis=0).sum() == np.isnan(stress).any(axis=0).sum()  # a fixed water mask


def test_stress_days_are_stable_across_windows():
    today = demo_data.corn_stress_arrays(AS_OF)
    tomorrow = demo_data.corn_stress_arrays(AS_OF + dt.timedelta(days=1))
    assert _same(today["time"][1:], tomorrow["time"][:-1])
    assert _same(today["stress_index"][1:], tomorrow["stress_index"][:-1])


# ---------------------------------------------------------------------------------------- Zarr v3


def test_zarr_v3_store(clean):
    group, metas, arrays = read_zarr_v3(clean, V3)
    expected = demo_data.climatology_arrays()
    assert set(arrays) == {"tmax_clim", "tmin_clim", "doy", "lat", "lon"}
    for name, data in arrays.items():
        assert _same(data, expected[name]), name
    consolidated = group["consolidated_metadata"]
    assert consolidated["kind"] == "inline" and consolidated["metadata"] == metas
    tmax = metas["tmax_clim"]
    assert tmax["data_type"] == "float32" and tmax["dimension_names"] == ["doy", "lat", "lon"]
    assert tmax["shape"] == [366, 8, 10] and tmax["fill_value"] == "NaN"
    assert metas["doy"]["data_type"] == "int32" and metas["lat"]["data_type"] == "float64"
    assert f"{V3}tmax_clim/c/3/1/1" in clean  # the padded last doy chunk
    block = np.frombuffer(clean[V3 + "tmax_clim/c/3/1/1"][0], dtype="<f4").reshape(100, 4, 5)
    assert _same(block[:66], expected["tmax_clim"][300:366, 4:8, 5:10])
    assert np.isnan(block[66:]).all()
    assert list(arrays["doy"]) == list(range(1, 367))
    tmax_v, tmin_v = arrays["tmax_clim"], arrays["tmin_clim"]
    assert (tmax_v > tmin_v).all() and tmin_v.min() > -25 and tmax_v.max() < 40
    assert tmax_v[195].mean() > tmax_v[15].mean() + 15  # July is warmer than January


# --------------------------------------------------------------------------------------- variants


def _tokens(doc) -> set[str]:
    """Every key and string value in a JSON document, plus the path segments of keys."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.add(key)
            out.update(key.split("/"))
            out |= _tokens(value)
    elif isinstance(doc, list):
        for item in doc:
            out |= _tokens(item)
    elif isinstance(doc, str):
        out.add(doc)
    return out


def _rename_tokens(doc, old: str, new: str):
    if isinstance(doc, dict):
        return {
            "/".join(new if p == old else p for p in k.split("/")): _rename_tokens(v, old, new) for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_rename_tokens(v, old, new) for v in doc]
    return new if doc == old else doc


def _changed(clean, other, key_map=lambda k: k) -> set[str]:
    mapped = {key_map(k): v for k, v in clean.items()}
    assert set(mapped) == set(other)
    return {k for k in other if other[k] != mapped[k]}


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="no_such_variant"):
        build_qa_artefacts(AS_OF, variant="no_such_variant")


def test_variant_renamed_column(clean):
    art = build_qa_artefacts(AS_OF, variant="renamed_column")
    assert _changed(clean, art) == {CUR_CSV, CUR_PARQUET}
    frame = _csv(art, CUR_CSV)
    assert "yield_forecast" in frame.columns and "forecast_yield" not in frame.columns
    pd.testing.assert_frame_equal(frame.rename(columns={"yield_forecast": "forecast_yield"}), _csv(clean, CUR_CSV))
    table = _parquet(art, CUR_PARQUET)
    assert table.schema.field("yield_forecast").type == pa.float64()
    assert "forecast_yield" not in table.schema.names
    renamed = table.rename_columns(["forecast_yield" if n == "yield_forecast" else n for n in table.schema.names])
    assert renamed.equals(_parquet(clean, CUR_PARQUET))


def test_variant_dropped_column(clean):
    art = build_qa_artefacts(AS_OF, variant="dropped_column")
    assert _changed(clean, art) == {CUR_CSV}
    frame = _csv(art, CUR_CSV)
    assert list(frame.columns) == [c for c in DELIVERY_COLUMNS if c != "unit"]
    pd.testing.assert_frame_equal(frame, _csv(clean, CUR_CSV).drop(columns=["unit"]))


def test_variant_retyped_column(clean):
    art = build_qa_artefacts(AS_OF, variant="retyped_column")
    assert _changed(clean, art) == {CUR_CSV, CUR_PARQUET}
    frame, base = _csv(art, CUR_CSV), _csv(clean, CUR_CSV)
    assert list(frame.columns) == DELIVERY_COLUMNS
    assert frame["forecast_yield"].dtype == object
    assert frame["forecast_yield"].str.fullmatch(r"\d+\.\d (bu|kg)").all()
    parsed = frame["forecast_yield"].str.split(" ").str[0].astype(float)
    assert np.allclose(parsed, base["forecast_yield"])
    pd.testing.assert_frame_equal(frame.drop(columns="forecast_yield"), base.drop(columns="forecast_yield"))
    table = _parquet(art, CUR_PARQUET)
    assert table.schema.field("forecast_yield").type == pa.string()
    assert table.column("forecast_yield").to_pylist() == frame["forecast_yield"].tolist()
    assert table.drop_columns(["forecast_yield"]).equals(_parquet(clean, CUR_PARQUET).drop_columns(["forecast_yield"]))


def test_variant_stale(clean):
    art = build_qa_artefacts(AS_OF, variant="stale")
    assert _changed(clean, art) == {CUR_CSV, CUR_PARQUET}  # same file names, old contents
    frame, base = _csv(art, CUR_CSV), _csv(clean, CUR_CSV)
    stale = (AS_OF - dt.timedelta(days=30)).isoformat()
    assert (frame["as_of_date"] == stale).all()
    pd.testing.assert_frame_equal(frame.drop(columns="as_of_date"), base.drop(columns="as_of_date"))
    table = _parquet(art, CUR_PARQUET)
    assert set(table.column("as_of_date").to_pylist()) == {AS_OF - dt.timedelta(days=30)}
    assert table.schema.field("as_of_date").type == pa.date32()
    assert table.drop_columns(["as_of_date"]).equals(_parquet(clean, CUR_PARQUET).drop_columns(["as_of_date"]))


def test_variant_renamed_coordinate(clean):
    art = build_qa_artefacts(AS_OF, variant="renamed_coordinate")
    changed = _changed(clean, art, key_map=lambda k: k.replace(V2 + "lat/", V2 + "latitude/"))
    assert changed == {V2 + ".zmetadata", V2 + "stress_index/.zattrs", V2 + "latitude/.zattrs"}
    metadata_keys = [k for k in art if k.startswith(V2) and k.rsplit("/", 1)[1].startswith(".")]
    for key in metadata_keys:
        doc = _json(art, key)
        assert "lat" not in _tokens(doc), key
        assert doc == _rename_tokens(_json(clean, key.replace("/latitude/", "/lat/")), "lat", "latitude"), key
    assert not any(k.startswith(V2 + "lat/") for k in art)
    meta, arrays = read_zarr_v2(art, V2)
    assert set(arrays) == {"stress_index", "time", "latitude", "lon"}
    assert meta["stress_index/.zattrs"]["_ARRAY_DIMENSIONS"] == ["time", "latitude", "lon"]
    assert meta["latitude/.zattrs"]["_ARRAY_DIMENSIONS"] == ["latitude"]
    assert _same(arrays["latitude"], demo_data.corn_stress_arrays(AS_OF)["lat"])
    # The clean store uses lat as a dimension name and never latitude.
    clean_meta, _ = read_zarr_v2(clean, V2)
    dims = {d for k, v in clean_meta.items() if k.endswith(".zattrs") for d in v.get("_ARRAY_DIMENSIONS", [])}
    assert dims == {"time", "lat", "lon"}
    # The Zarr v3 store is untouched.
    assert all(art[k] == v for k, v in clean.items() if k.startswith(V3))


# ----------------------------------------------------------------------------------- determinism


def test_deterministic_and_date_dependent(clean):
    again = build_qa_artefacts(AS_OF)
    assert again == clean
    assert list(again) == sorted(again)
    assert build_qa_artefacts(dt.datetime(2026, 5, 7, 23, 59)) == clean
    for variant in demo_data.VARIANTS:
        assert build_qa_artefacts(AS_OF, variant=variant) == build_qa_artefacts(AS_OF, variant=variant)
    tomorrow = build_qa_artefacts(AS_OF + dt.timedelta(days=1))
    # Static history and the climatology do not change day to day; the weather window and deliveries do.
    for key, value in clean.items():
        if key.startswith((V3, "usda/", "wasde/")):
            assert tomorrow[key] == value, key
    assert tomorrow[V2 + "stress_index/0.0.0"] != clean[V2 + "stress_index/0.0.0"]
    assert f"deliveries/csv/commodity_forecast_{(AS_OF + dt.timedelta(days=1)).isoformat()}.csv" in tomorrow


# ----------------------------------------------------------------------------------- seed_bucket


def _check_seed_cycle(client, bucket: str, root: str) -> None:
    artefacts = build_qa_artefacts(AS_OF)
    prefix = root + "demo/"

    def read_object(key):
        obj = client.get_object(Bucket=bucket, Key=root + key)
        return obj["Body"].read(), obj["ContentType"]

    client.put_object(Bucket=bucket, Key=prefix + "deliveries/csv/old_delivery.csv", Body=b"x", ContentType="text/csv")
    client.put_object(Bucket=bucket, Key=prefix + "notes/keep.txt", Body=b"keep", ContentType="text/plain")
    client.put_object(Bucket=bucket, Key=root + "other/usda/nass/keep.csv", Body=b"keep", ContentType="text/csv")
    first = seed_bucket(client, bucket, artefacts, prefix=prefix, delete_extra_under=DEMO_PREFIXES)
    assert first == {"uploaded": len(artefacts), "unchanged": 0, "deleted": 1}
    assert read_object("demo/" + CUR_CSV) == artefacts[CUR_CSV]
    assert read_object("demo/" + V2 + ".zmetadata")[1] == "application/json"
    assert read_object("demo/notes/keep.txt")[0] == b"keep"  # outside delete_extra_under
    assert read_object("other/usda/nass/keep.csv")[0] == b"keep"  # outside the prefix

    again = seed_bucket(client, bucket, artefacts, prefix=prefix.rstrip("/"), delete_extra_under=DEMO_PREFIXES)
    assert again == {"uploaded": 0, "unchanged": len(artefacts), "deleted": 0}

    # The next night: only what changed is uploaded, yesterday's delivery rolls off.
    tomorrow = build_qa_artefacts(AS_OF + dt.timedelta(days=1))
    changed = {k for k in tomorrow if artefacts.get(k) != tomorrow[k]}
    gone = set(artefacts) - set(tomorrow)
    third = seed_bucket(client, bucket, tomorrow, prefix=prefix, delete_extra_under=DEMO_PREFIXES)
    assert third == {"uploaded": len(changed), "unchanged": len(tomorrow) - len(changed), "deleted": len(gone)}
    assert 0 < len(changed) < len(tomorrow) and gone


def test_seed_bucket_against_real_s3(s3, buckets, area):
    """Upload, idempotent re-seed and the next night's delta on the real SeaweedFS server."""
    qa, _ = buckets
    _check_seed_cycle(s3, qa, area)


def test_seed_bucket_reuploads_when_etag_is_not_an_md5(s3, buckets, area):
    """A multipart ETag is not the body's MD5: "cannot tell", so the object is uploaded again."""
    qa, _ = buckets
    artefacts = build_qa_artefacts(AS_OF)
    key = "usda/nass/yields_corn.csv"
    body, content_type = artefacts[key]
    upload = s3.create_multipart_upload(Bucket=qa, Key=area + key, ContentType=content_type)
    part = s3.upload_part(Bucket=qa, Key=area + key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
    s3.complete_multipart_upload(
        Bucket=qa,
        Key=area + key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    assert "-" in s3.head_object(Bucket=qa, Key=area + key)["ETag"]

    counts = seed_bucket(s3, qa, {key: artefacts[key]}, prefix=area)

    assert counts == {"uploaded": 1, "unchanged": 0, "deleted": 0}
    assert s3.head_object(Bucket=qa, Key=area + key)["ETag"].strip('"') == hashlib.md5(body).hexdigest()


def test_seed_bucket_rejects_bad_keys(s3, buckets):
    qa, _ = buckets
    with pytest.raises(ValueError, match="relative"):
        seed_bucket(s3, qa, {"/abs.csv": (b"x", "text/csv")})
    with pytest.raises(ValueError, match=r"\.\."):
        seed_bucket(s3, qa, {"a.csv": (b"x", "text/csv")}, delete_extra_under=["../up/"])

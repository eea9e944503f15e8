"""Contracts against a real S3 server (SeaweedFS): schema readers, checks, drift and GX validation."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time

import pytest
import yaml

from greenlight import contracts
from greenlight.contracts import (
    check,
    gx_suite,
    load_contract,
    read_artefact,
    read_schema,
    read_table_sample,
    schema_frame,
    validate_with_gx,
)
from greenlight.dev.demo_data import (
    CLIMATOLOGY_STORE,
    CORN_STRESS_STORE,
    DELIVERY_CSV_PREFIX,
    DELIVERY_PARQUET_PREFIX,
    build_qa_artefacts,
    delivery_rows,
    seed_bucket,
)
from greenlight.errors import ConfigError, ContractError

AS_OF = dt.date(2026, 5, 7)
NOW = dt.datetime(2026, 5, 7, 12, 0, tzinfo=dt.UTC)
CONTRACT_PREFIXES = {
    "deliveries_csv": DELIVERY_CSV_PREFIX,
    "deliveries_parquet": DELIVERY_PARQUET_PREFIX,
    "corn_stress_zarr": CORN_STRESS_STORE,
    "climatology_zarr": CLIMATOLOGY_STORE,
}
METADATA_SUFFIXES = (".zmetadata", ".zgroup", ".zarray", ".zattrs", "zarr.json")


@pytest.fixture(scope="module")
def loaded():
    return {name: load_contract(name) for name in CONTRACT_PREFIXES}


def seed(s3, bucket: str, area: str, variant: str = "clean") -> None:
    seed_bucket(s3, bucket, build_qa_artefacts(AS_OF, variant=variant), prefix=area)


def read(s3, bucket: str, area: str, contract):
    return read_artefact(s3, bucket, area + CONTRACT_PREFIXES[contract.name], contract, now=NOW)


def only(records: list[dict], check_name: str, name: str, layer: str = "contract") -> dict:
    found = [r for r in records if r["check"] == check_name and r["name"] == name and r["layer"] == layer]
    assert len(found) == 1, records
    return found[0]


class Recorder:
    """Delegates to a real botocore client and records which keys were fetched."""

    def __init__(self, client):
        self._client = client
        self.got: list[tuple[str, str | None]] = []

    def get_object(self, **kwargs):
        self.got.append((kwargs["Key"], kwargs.get("Range")))
        return self._client.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


# ------------------------------------------------------------------------------ contract files


def test_contract_files_load_and_describe_the_clean_artefacts(loaded):
    assert set(contracts.available_contracts()) >= set(CONTRACT_PREFIXES)
    csv = loaded["deliveries_csv"]
    assert (csv.kind, csv.format, csv.version) == ("table", "csv", 1)
    assert csv.columns["as_of_date"] == "date" and csv.columns["forecast_yield"] == "float"
    assert csv.non_null == ("as_of_date", "commodity", "region")
    assert csv.freshness.column == "as_of_date"
    assert loaded["deliveries_parquet"].format == "parquet"
    stress = loaded["corn_stress_zarr"]
    assert stress.variables["stress_index"].dims == ("time", "lat", "lon")
    assert dict(stress.coordinates) == {"time": "int64", "lat": "float64", "lon": "float64"}
    assert loaded["climatology_zarr"].coordinates["doy"] == "int32"
    json.dumps(csv.to_dict())


BASE = {
    "name": "deliv",
    "version": 1,
    "kind": "table",
    "format": "csv",
    "select": "*.csv",
    "columns": {"as_of_date": "date", "value": "float"},
    "non_null": ["as_of_date"],
    "freshness": {"column": "as_of_date", "max_age_days": 3},
}
ZARR = {"name": "deliv", "version": 1, "kind": "zarr", "variables": {"v": {"dtype": "float32", "dims": ["x"]}}}


@pytest.mark.parametrize(
    ("doc", "key", "text"),
    [
        ({**BASE, "colums": {}}, "colums", "did you mean 'columns'"),
        ({**BASE, "columns": {"as_of_date": "date", "value": "floatt"}}, "columns.value", "unknown type 'floatt'"),
        ({**BASE, "non_null": ["region"]}, "non_null", "'region' is not one of the contract's columns"),
        ({**BASE, "freshness": {"column": "value", "max_age_days": 3}}, "freshness.column", "date or datetime"),
        ({**BASE, "freshness": {"column": "as_of_date", "max_age_days": 0}}, "freshness.max_age_days", "> 0"),
        ({**BASE, "freshness": {"column": "as_of_date", "max_days": 3}}, "freshness.max_days", "unknown key"),
        ({**BASE, "version": 0}, "version", "integer >= 1"),
        ({**BASE, "version": "2"}, "version", "integer >= 1"),
        ({**BASE, "kind": "tabel"}, "kind", "'table' or 'zarr'"),
        ({**BASE, "format": "xlsx"}, "format", "'csv' or 'parquet'"),
        ({k: v for k, v in BASE.items() if k != "select"}, "select", "is required"),
        ({**BASE, "select": "../*.csv"}, "select", "relative"),
        ({**BASE, "variables": {}}, "variables", "not allowed for kind: table"),
        ({**BASE, "name": "other"}, "name", "does not match the file name"),
        ({**BASE, "columns": {True: "string"}}, "columns", "quote True"),
        ({**ZARR, "variables": {"v": {"dtype": "float33", "dims": ["x"]}}}, "variables.v.dtype", "not a numpy dtype"),
        ({**ZARR, "variables": {"v": {"dtype": "float32"}}}, "variables.v.dims", "non-empty list"),
        (
            {**ZARR, "variables": {"v": {"dtype": "float32", "dims": ["x"], "units": "K"}}},
            "variables.v.units",
            "unknown",
        ),
        ({**ZARR, "format": "csv"}, "format", "not allowed for kind: zarr"),
        ({**ZARR, "variables": {}}, "variables", "needs variables and/or coordinates"),
    ],
)
def test_bad_contract_files_name_the_file_and_key(tmp_path, doc, key, text):
    path = tmp_path / "deliv.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_contract(path)
    message = str(info.value)
    assert str(path) in message and f": {key}:" in message and text in message, message


def test_contract_file_errors_that_are_not_keys(tmp_path):
    (tmp_path / "listy.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_contract(tmp_path / "listy.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_contract(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match=r"not found.*deliveries_csv"):
        load_contract("no_such_contract")
    # a bare name is looked up in the contracts dir given (or $GREENLIGHT_CONTRACTS_DIR)
    (tmp_path / "deliv.yaml").write_text(yaml.safe_dump(BASE))
    assert load_contract("deliv", contracts_dir=tmp_path).columns["value"] == "float"


# ------------------------------------------------------------------------------------ clean data


def test_clean_artefacts_pass_all_four_contracts(s3, buckets, area, loaded):
    qa, _ = buckets
    seed(s3, qa, area)
    for name, contract in loaded.items():
        schema, sample = read(s3, qa, area, contract)
        json.dumps(schema)
        json.dumps(sample)
        assert check(contract, schema, sample=sample, now=NOW) == [], name
        result = validate_with_gx(contract, schema, sample, NOW)
        json.dumps(result)
        assert result["success"] is True, (name, result)
        assert result["results"] and all(r["success"] for r in result["results"])
        if contract.kind == "table":
            assert schema["key"].endswith(f"commodity_forecast_{AS_OF.isoformat()}.{contract.format}")
            assert schema["keys"] == [schema["key"]]
            assert schema["columns"] == dict(contract.columns)
            assert len(sample) == len(delivery_rows(AS_OF)) and sample[0]["as_of_date"] == AS_OF.isoformat()
            assert {r["check"] for r in result["results"]} == {"schema", "empty", "null_keys", "stale"}
        else:
            assert sample is None
            root = area + CONTRACT_PREFIXES[name]
            assert schema["keys"] == [root + (".zmetadata" if name == "corn_stress_zarr" else "zarr.json")]
            assert schema["consolidated"] is True
            assert {n: v["dtype"] for n, v in schema["coordinates"].items()} == dict(contract.coordinates)
    # the parquet schema came from the footer with ranged GETs; the CSV from one small GET
    parquet = read_schema(s3, qa, area + DELIVERY_PARQUET_PREFIX, loaded["deliveries_parquet"])
    assert parquet["ranges_read"] and all(r.startswith("bytes=") for r in parquet["ranges_read"])
    assert parquet["native_types"]["as_of_date"] == "date32[day]"


# ------------------------------------------------------------------------------------ variants

VARIANT_CASES = [
    # variant, contract, (check, name, expected, observed), GX signature missing / unexpected
    (
        "renamed_column",
        "deliveries_csv",
        ("column_renamed", "forecast_yield", "forecast_yield", "yield_forecast"),
        (["column:forecast_yield:float"], ["column:yield_forecast:float"]),
    ),
    (
        "renamed_column",
        "deliveries_parquet",
        ("column_renamed", "forecast_yield", "forecast_yield", "yield_forecast"),
        (["column:forecast_yield:float"], ["column:yield_forecast:float"]),
    ),
    ("dropped_column", "deliveries_csv", ("column_missing", "unit", "string", None), (["column:unit:string"], [])),
    (
        "retyped_column",
        "deliveries_csv",
        ("column_retyped", "forecast_yield", "float", "string"),
        (["column:forecast_yield:float"], ["column:forecast_yield:string"]),
    ),
    (
        "retyped_column",
        "deliveries_parquet",
        ("column_retyped", "forecast_yield", "float", "string"),
        (["column:forecast_yield:float"], ["column:forecast_yield:string"]),
    ),
    (
        "renamed_coordinate",
        "corn_stress_zarr",
        ("coordinate_renamed", "lat", "lat", "latitude"),
        (
            ["coordinate:lat:float64", "variable:stress_index:float32(time,lat,lon)"],
            ["coordinate:latitude:float64", "variable:stress_index:float32(time,latitude,lon)"],
        ),
    ),
]


@pytest.mark.parametrize(("variant", "name", "expected", "gx_sets"), VARIANT_CASES, ids=lambda v: str(v)[:24])
def test_variant_gives_its_specific_mismatch(s3, buckets, area, loaded, variant, name, expected, gx_sets):
    qa, _ = buckets
    seed(s3, qa, area, variant)
    contract = loaded[name]
    schema, sample = read(s3, qa, area, contract)
    records = check(contract, schema, sample=sample, now=NOW)
    check_name, column, want, seen = expected
    record = only(records, check_name, column)
    assert (record["expected"], record["observed"]) == (want, seen)
    assert record["prefix"] == f"s3://{qa}/{area}{CONTRACT_PREFIXES[name]}"
    assert column in record["message"] and "contract " + name in record["message"]
    if variant == "renamed_coordinate":
        dims = only(records, "dims_changed", "stress_index")
        assert (dims["expected"], dims["observed"]) == (["time", "lat", "lon"], ["time", "latitude", "lon"])
        assert len(records) == 2, records
    else:
        assert len(records) == 1, records

    result = validate_with_gx(contract, schema, sample, NOW)
    assert result["success"] is False
    failed = [r for r in result["results"] if not r["success"]]
    assert [r["check"] for r in failed] == ["schema"], failed
    assert failed[0]["expectation"] == "expect_column_distinct_values_to_equal_set"
    assert (failed[0]["missing"], failed[0]["unexpected"]) == gx_sets

    # the defect is confined to the artefacts the variant changes: the others still pass (no GX)
    for other in set(loaded) - AFFECTED[variant]:
        other_schema, other_sample = read(s3, qa, area, loaded[other])
        assert check(loaded[other], other_schema, sample=other_sample, now=NOW) == [], other


AFFECTED = {
    "renamed_column": {"deliveries_csv", "deliveries_parquet"},
    "dropped_column": {"deliveries_csv"},
    "retyped_column": {"deliveries_csv", "deliveries_parquet"},
    "renamed_coordinate": {"corn_stress_zarr"},
}


@pytest.mark.parametrize("name", ["deliveries_csv", "deliveries_parquet"])
def test_stale_delivery_is_reported_by_check_and_gx(s3, buckets, area, loaded, name):
    qa, _ = buckets
    seed(s3, qa, area, "stale")
    contract = loaded[name]
    schema, sample = read(s3, qa, area, contract)
    records = check(contract, schema, sample=sample, now=NOW)
    stale = only(records, "stale", "as_of_date")
    assert len(records) == 1
    cutoff = (NOW - dt.timedelta(days=8)).date().isoformat()
    assert stale["expected"] == f">= {cutoff}"
    assert stale["observed"] == (AS_OF - dt.timedelta(days=30)).isoformat()
    assert "30 days old" in stale["message"]

    result = validate_with_gx(contract, schema, sample, NOW)
    assert result["success"] is False
    failed = [r for r in result["results"] if not r["success"]]
    assert [(r["check"], r["expectation"]) for r in failed] == [("stale", "expect_column_max_to_be_between")]
    assert failed[0]["kwargs"]["min_value"] == cutoff
    assert str(failed[0]["observed"]).startswith((AS_OF - dt.timedelta(days=30)).isoformat())


def test_null_keys_and_empty_files_in_the_sample(s3, buckets, area, loaded):
    qa, _ = buckets
    contract = loaded["deliveries_csv"]
    prefix = area + DELIVERY_CSV_PREFIX
    header = "as_of_date,commodity,region,forecast_yield,unit,model_version\n"
    body = header + "2026-05-07,corn,US-IA,201.5,bu/acre,2.7.0\n2026-05-07,corn,,190.1,bu/acre,2.7.0\n"
    s3.put_object(Bucket=qa, Key=prefix + "commodity_forecast_2026-05-07.csv", Body=body.encode())
    schema, sample = read_artefact(s3, qa, prefix, contract, now=NOW)
    records = check(contract, schema, sample=sample, now=NOW)
    nulls = only(records, "null_keys", "region")
    assert (nulls["expected"], nulls["observed"]) == (0, 1) and len(records) == 1
    result = validate_with_gx(contract, schema, sample, NOW)
    failed = [r for r in result["results"] if not r["success"]]
    assert [r["check"] for r in failed] == ["null_keys"] and failed[0]["observed"]["unexpected_count"] == 1

    time.sleep(1.1)  # a newer file with a header only
    s3.put_object(Bucket=qa, Key=prefix + "commodity_forecast_2026-05-08.csv", Body=header.encode())
    schema, sample = read_artefact(s3, qa, prefix, contract, now=NOW)
    assert schema["key"].endswith("2026-05-08.csv") and sample == []
    assert [r["check"] for r in check(contract, schema, sample=sample, now=NOW)] == ["empty"]


# ----------------------------------------------------------------------------------------- drift


def _bumped(tmp_path, contract_name: str, version: int, change) -> contracts.Contract:
    doc = yaml.safe_load((contracts.CONTRACTS_DIR / f"{contract_name}.yaml").read_text())
    doc["version"] = version
    change(doc)
    path = tmp_path / f"{contract_name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_contract(path)


def _rename_column(doc):
    doc["columns"] = {("yield_forecast" if k == "forecast_yield" else k): v for k, v in doc["columns"].items()}


def test_drift_against_prod_unless_the_contract_was_bumped(s3, buckets, area, loaded, tmp_path):
    qa, prod = buckets
    seed(s3, prod, area, "clean")  # what prod holds now
    seed(s3, qa, area, "renamed_column")
    qa_prefix = prod_prefix = area + DELIVERY_CSV_PREFIX
    v1 = loaded["deliveries_csv"]
    prod_schema = read_schema(s3, prod, prod_prefix, v1)
    assert prod_schema["bucket"] == prod and prod_schema["columns"] == dict(v1.columns)

    # unchanged contract: the rename is a contract mismatch and drift against prod
    qa_schema, sample = read_artefact(s3, qa, qa_prefix, v1, now=NOW)
    records = check(v1, qa_schema, prod_schema, sample=sample, now=NOW)
    assert {r["layer"] for r in records} == {"contract", "drift"}
    drift = only(records, "column_renamed", "forecast_yield", layer="drift")
    assert (drift["expected"], drift["observed"]) == ("forecast_yield", "yield_forecast")
    assert f"s3://{prod}/{prod_prefix}" in drift["message"] and "bump the contract version" in drift["message"]

    # the contract now declares the new column: QA matches it, but prod consumers are on v1 ...
    v2 = _bumped(tmp_path, "deliveries_csv", 2, _rename_column)
    records = check(v2, qa_schema, prod_schema, sample=sample, now=NOW)
    assert [(r["layer"], r["check"], r["name"]) for r in records] == [("drift", "column_renamed", "forecast_yield")]
    # ... without knowing prod's contract version, or with prod already on v2, drift still blocks
    again = check(v2, qa_schema, prod_schema, prod_contract_version=2, sample=sample, now=NOW)
    assert [{**r, "message": ""} for r in again] == [{**r, "message": ""} for r in records]
    assert "promoted under contract v2, now contract deliveries_csv v2" in again[0]["message"]
    # prod was promoted under v1 < v2: the change is expected, nothing blocks
    assert check(v2, qa_schema, prod_schema, prod_contract_version=1, sample=sample, now=NOW) == []


def test_drift_on_a_zarr_store_and_a_first_promotion(s3, buckets, area, loaded, tmp_path):
    qa, prod = buckets
    seed(s3, prod, area, "clean")
    seed(s3, qa, area, "renamed_coordinate")
    prefix = area + CORN_STRESS_STORE

    def rename_lat(doc):
        doc["coordinates"] = {("latitude" if k == "lat" else k): v for k, v in doc["coordinates"].items()}
        doc["variables"]["stress_index"]["dims"] = ["time", "latitude", "lon"]

    v2 = _bumped(tmp_path, "corn_stress_zarr", 2, rename_lat)
    qa_schema = read_schema(s3, qa, prefix, v2)
    prod_schema = read_schema(s3, prod, prefix, v2)
    records = check(v2, qa_schema, prod_schema, prod_contract_version=2)
    assert {(r["layer"], r["check"], r["name"]) for r in records} == {
        ("drift", "coordinate_renamed", "lat"),
        ("drift", "dims_changed", "stress_index"),
    }
    assert check(v2, qa_schema, prod_schema, prod_contract_version=1) == []

    # nothing in prod yet (first promotion): no drift layer, the QA store is checked alone
    assert read_schema(s3, prod, area + "nothing-here/", v2, missing_ok=True) is None
    report = contracts.evaluate(
        s3, loaded["climatology_zarr"], qa, area + CLIMATOLOGY_STORE, prod_bucket=prod, prod_prefix=area + "none/"
    )
    assert report["passed"] is True and report["prod_schema"] is None and report["mismatches"] == []


# ----------------------------------------------------------------------------- reading as little


def _strip_consolidated(artefacts):
    out = {k: v for k, v in artefacts.items() if not k.endswith(".zmetadata")}
    root = CLIMATOLOGY_STORE + "zarr.json"
    doc = json.loads(artefacts[root][0])
    doc.pop("consolidated_metadata")
    out[root] = (json.dumps(doc).encode(), artefacts[root][1])
    return out


def test_zarr_readers_never_get_chunks(s3, buckets, area, loaded):
    qa, _ = buckets
    artefacts = build_qa_artefacts(AS_OF)
    seed_bucket(s3, qa, artefacts, prefix=area + "consolidated/")
    seed_bucket(s3, qa, _strip_consolidated(artefacts), prefix=area + "per-array/")
    chunk_keys = [k for k in artefacts if k.startswith((CORN_STRESS_STORE, CLIMATOLOGY_STORE))]
    assert any(k.endswith("/0.0.0") for k in chunk_keys) and any("/c/" in k for k in chunk_keys)
    for name in ("corn_stress_zarr", "climatology_zarr"):
        contract = loaded[name]
        store = CONTRACT_PREFIXES[name]
        recorder = Recorder(s3)
        consolidated = read_schema(recorder, qa, area + "consolidated/" + store, contract)
        assert [k for k, _ in recorder.got] == consolidated["keys"] and len(consolidated["keys"]) == 1
        recorder = Recorder(s3)
        per_array = read_schema(recorder, qa, area + "per-array/" + store, contract)
        fetched = [k for k, _ in recorder.got]
        assert fetched and all(k.endswith(METADATA_SUFFIXES) for k in fetched), fetched
        assert per_array["consolidated"] is False
        assert len(per_array["keys"]) > 1 and set(per_array["keys"]) <= set(fetched)
        assert per_array["variables"] == consolidated["variables"]
        assert per_array["coordinates"] == consolidated["coordinates"]
        assert check(contract, per_array) == []


def test_large_csv_is_read_with_one_ranged_get_and_partial_line_dropped(s3, buckets, area, loaded):
    qa, _ = buckets
    contract = loaded["deliveries_csv"]
    prefix = area + DELIVERY_CSV_PREFIX
    header = "as_of_date,commodity,region,forecast_yield,unit,model_version\n"
    rows = [f"2026-05-07,corn,US-R{i:06d},{190 + i % 20}.5,bu/acre,2.7.0\n" for i in range(12_000)]
    body = (header + "".join(rows)).encode()
    assert len(body) > 2 * contracts.CSV_HEAD_BYTES
    s3.put_object(Bucket=qa, Key=prefix + "commodity_forecast_2026-05-07.csv", Body=body)
    recorder = Recorder(s3)
    schema, sample = read_artefact(recorder, qa, prefix, contract, now=NOW)
    assert recorder.got == [(prefix + "commodity_forecast_2026-05-07.csv", f"bytes=0-{contracts.CSV_HEAD_BYTES - 1}")]
    assert schema["whole_file"] is False and schema["bytes_read"] == contracts.CSV_HEAD_BYTES
    assert 0 < schema["rows_read"] < 12_000 and schema["columns"] == dict(contract.columns)
    assert len(sample) == contracts.SAMPLE_ROWS and set(sample[0]) == {"as_of_date", "commodity", "region"}
    assert check(contract, schema, sample=sample, now=NOW) == []


def test_parquet_schema_comes_from_the_footer_only(s3, buckets, area, loaded):
    import pyarrow as pa
    import pyarrow.parquet as pq

    qa, _ = buckets
    contract = loaded["deliveries_parquet"]
    prefix = area + DELIVERY_PARQUET_PREFIX
    n = 60_000
    table = pa.table(
        {
            "as_of_date": pa.array([AS_OF] * n, type=pa.date32()),
            "commodity": ["corn"] * n,
            "region": [f"R{i}" for i in range(n)],
            "forecast_yield": [float(i) for i in range(n)],
            "unit": ["bu/acre"] * n,
            "model_version": ["2.7.0"] * n,
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none", row_group_size=20_000)
    key = prefix + "commodity_forecast_2026-05-07.parquet"
    s3.put_object(Bucket=qa, Key=key, Body=buf.getvalue())
    size = len(buf.getvalue())
    assert size > 8 * contracts.PARQUET_BLOCK_BYTES

    recorder = Recorder(s3)
    schema = read_schema(recorder, qa, prefix, contract)
    assert schema["columns"] == dict(contract.columns) and schema["num_rows"] == n
    assert [k for k, _ in recorder.got] == [key]  # one ranged GET: the footer
    start = int(recorder.got[0][1].split("=")[1].split("-")[0])
    assert recorder.got[0][1] == f"bytes={start}-{size - 1}" and size - start <= contracts.PARQUET_BLOCK_BYTES

    recorder = Recorder(s3)
    sample = read_table_sample(recorder, qa, prefix, contract, key=schema["key"])
    assert len(sample) == contracts.SAMPLE_ROWS and set(sample[0]) == {"as_of_date", "commodity", "region"}
    fetched = sum(int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) + 1 for _, r in recorder.got)
    assert all(r for _, r in recorder.got) and fetched < size / 2, (fetched, size)


# ------------------------------------------------------------------------------ clear failures


def test_unreadable_or_missing_artefacts_raise_contract_errors_naming_the_location(s3, buckets, area, loaded):
    qa, _ = buckets
    csv, parquet, zarr = loaded["deliveries_csv"], loaded["deliveries_parquet"], loaded["corn_stress_zarr"]
    where = re.escape(f"s3://{qa}/{area}")
    with pytest.raises(ContractError, match=where + "missing/: the prefix is missing or empty") as info:
        read_schema(s3, qa, area + "missing", csv)
    assert info.value.exit_code == 2 and info.value.kind == "contract"
    s3.put_object(Bucket=qa, Key=area + "d/readme.txt", Body=b"hello")
    with pytest.raises(ContractError, match=r"no object matches 'commodity_forecast_\*\.csv' \(found: readme.txt\)"):
        read_schema(s3, qa, area + "d/", csv)
    s3.put_object(Bucket=qa, Key=area + "p/commodity_forecast_x.parquet", Body=b"not parquet at all, really")
    with pytest.raises(ContractError, match=where + r"p/commodity_forecast_x\.parquet: not a readable parquet"):
        read_schema(s3, qa, area + "p/", parquet)
    with pytest.raises(ContractError, match=r"no Zarr group metadata"):
        read_schema(s3, qa, area + "d/", zarr)
    s3.put_object(Bucket=qa, Key=area + "z/.zmetadata", Body=b"{not json")
    with pytest.raises(ContractError, match=where + r"z/\.zmetadata: not valid JSON"):
        read_schema(s3, qa, area + "z/", zarr)
    with pytest.raises(ContractError, match="no-such-bucket-gl"):
        read_schema(s3, "no-such-bucket-gl", "x/", csv)


def test_newest_matching_object_wins(s3, buckets, area, loaded):
    qa, _ = buckets
    contract = loaded["deliveries_csv"]
    header = b"as_of_date,commodity,region,forecast_yield,unit,model_version\n"
    s3.put_object(Bucket=qa, Key=area + "commodity_forecast_z.csv", Body=header + b"2026-05-07,c,r,1.5,u,m\n")
    s3.put_object(Bucket=qa, Key=area + "sub/commodity_forecast_zz.csv", Body=header)  # * stays in one segment
    time.sleep(1.1)
    s3.put_object(Bucket=qa, Key=area + "commodity_forecast_a.csv", Body=header + b"2026-05-07,c,r,1.5,u,m\n")
    s3.put_object(Bucket=qa, Key=area + "other.csv", Body=b"x\n1\n")
    assert read_schema(s3, qa, area, contract)["key"] == area + "commodity_forecast_a.csv"


# -------------------------------------------------------------------------- GX operator wiring


def test_suite_and_frame_work_the_way_the_gx_provider_runs_them(s3, buckets, area, loaded):
    """What GXValidateDataFrameOperator does in execute(), without Airflow: its own ephemeral
    context, a pandas batch definition, and run_validation_definition with our suite and frame."""
    from great_expectations_provider.common.gx_context_actions import load_data_context, run_validation_definition

    qa, _ = buckets
    seed(s3, qa, area, "dropped_column")
    contract = loaded["deliveries_csv"]
    schema, sample = read(s3, qa, area, contract)
    frame = schema_frame(schema, sample)
    assert set(frame["part"]) == {"schema", "sample"} and "sample.as_of_date" in frame.columns
    assert "column:unit:string" not in set(frame["signature"].dropna())

    context = load_data_context(context_type="ephemeral", gx_cloud_config=None)
    asset = context.data_sources.add_pandas(name="gate").add_dataframe_asset(name="gate")
    batch_definition = asset.add_batch_definition_whole_dataframe(name="gate")
    result = run_validation_definition(
        task_id="gate_deliveries_csv",
        expect=gx_suite(contract, now=NOW, context=context),
        batch_definition=batch_definition,
        result_format=None,
        batch_parameters={"dataframe": frame},
        gx_context=context,
    )
    described = result.describe_dict()
    json.dumps(described, default=str)
    assert result.success is False
    failed = [r for r in result.results if not r.success]
    assert [r.expectation_config.meta["greenlight_check"] for r in failed] == ["schema"]

"""Data contracts: what prod consumers expect from each artefact, read from S3 metadata and checked.

This package owns the contract files' format and loading, the schema readers, the checks (contract
and drift) and the Great Expectations suite. It does not import Airflow, and importing it costs
only the standard library, pydantic and PyYAML (pandas, pyarrow, numpy, botocore and GX are imported
by the functions that need them), so DAG parsing may import it.

A contract is a small YAML file under ``include/contracts/`` (one per artefact)::

    name: deliveries_csv            # = the file name without .yaml
    version: 1                      # bump when a schema change is expected (prod consumers are ready)
    kind: table                     # table | zarr
    format: csv                     # csv | parquet (table only)
    select: "commodity_forecast_*.csv"   # glob relative to the prefix: the newest match is checked
    columns: {as_of_date: date, commodity: string, forecast_yield: float}
    non_null: [as_of_date, commodity]              # optional: key columns without empty values
    freshness: {column: as_of_date, max_age_days: 8}   # optional: newest value at most N days old
    allow_extra: false              # optional: true = columns not listed here are tolerated

    kind: zarr
    variables: {stress_index: {dtype: float32, dims: [time, lat, lon]}}
    coordinates: {time: int64, lat: float64, lon: float64}   # 1-D arrays named after their dim

Table column types are logical: string, int, float, date, datetime, bool. Zarr dtypes are numpy
names (float32, int64, ...). In ``select``, ``*`` and ``?`` stay within one path segment and
``**`` crosses ``/``.

Modules (the names below are re-exported here, so ``contracts.load_contract(...)`` works):

* :mod:`~greenlight.contracts.model` — :class:`Contract` and :func:`load_contract`: the file is
  validated by pydantic models; errors are ``ConfigError`` naming the file and the key path.
* :mod:`~greenlight.contracts.readers` (with :mod:`.s3io` and :mod:`.zarrmeta`) —
  :func:`read_schema` / :func:`read_table_sample` / :func:`read_artefact`: one listing, then the first
  256 KiB of a CSV, a parquet footer (ranged GETs) or the Zarr metadata documents (never chunk data).
* :mod:`~greenlight.contracts.checks` — :func:`check` compares a schema with the contract and, for
  drift, with prod's schema (mismatch records; empty = pass); :func:`evaluate` is one whole gate.
* :mod:`~greenlight.contracts.gx` — :func:`schema_frame` + :func:`gx_suite` express the contract as a
  GX 1.x suite over a DataFrame of schema rows (plus sample rows); :func:`validate_with_gx` runs it.
"""

from greenlight.contracts.checks import check, evaluate
from greenlight.contracts.gx import (
    SAMPLE_PREFIX,
    SCHEMA_FRAME_COLUMNS,
    expected_signatures,
    gx_result_entry,
    gx_suite,
    schema_frame,
    signature,
    validate_with_gx,
)
from greenlight.contracts.model import (
    CONTRACTS_DIR,
    CONTRACTS_ENV,
    LOGICAL_TYPES,
    UNKNOWN,
    ArraySpec,
    Contract,
    Freshness,
    available_contracts,
    contract_path,
    freshness_cutoff,
    load_contract,
    parse_contract,
)
from greenlight.contracts.readers import (
    CSV_HEAD_BYTES,
    PARQUET_BLOCK_BYTES,
    SAMPLE_ROWS,
    logical_type,
    read_artefact,
    read_schema,
    read_table_sample,
)
from greenlight.contracts.s3io import find_object
from greenlight.contracts.values import dtype_name

__all__ = [
    "CONTRACTS_DIR",
    "CONTRACTS_ENV",
    "CSV_HEAD_BYTES",
    "LOGICAL_TYPES",
    "PARQUET_BLOCK_BYTES",
    "SAMPLE_PREFIX",
    "SAMPLE_ROWS",
    "SCHEMA_FRAME_COLUMNS",
    "UNKNOWN",
    "ArraySpec",
    "Contract",
    "Freshness",
    "available_contracts",
    "check",
    "contract_path",
    "dtype_name",
    "evaluate",
    "expected_signatures",
    "find_object",
    "freshness_cutoff",
    "gx_result_entry",
    "gx_suite",
    "load_contract",
    "logical_type",
    "parse_contract",
    "read_artefact",
    "read_schema",
    "read_table_sample",
    "schema_frame",
    "signature",
    "validate_with_gx",
]

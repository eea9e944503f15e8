"""Data contracts: what prod consumers expect from each artefact, read from S3 metadata and checked.

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

Three steps, all usable without Airflow:

* :func:`read_schema` / :func:`read_table_sample` / :func:`read_artefact` read what an artefact
  looks like from S3 with as little I/O as possible: one listing, then the first 256 KiB of a CSV,
  the footer of a parquet file (ranged GETs), or the Zarr metadata documents (never chunk data).
* :func:`check` compares that schema with the contract and, for drift, with the schema currently
  in prod; it returns mismatch records (empty list = pass).
* :func:`schema_frame` + :func:`gx_suite` express the same contract as a Great Expectations 1.x
  suite over a DataFrame of schema rows (plus sample rows); :func:`validate_with_gx` runs it in an
  ephemeral context. Pandas, pyarrow, numpy and GX are imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import json
import math
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlight.errors import ConfigError, ContractError
from greenlight.paths import INCLUDE_DIR

CONTRACTS_DIR = INCLUDE_DIR / "contracts"
CONTRACTS_ENV = "GREENLIGHT_CONTRACTS_DIR"

LOGICAL_TYPES = ("string", "int", "float", "date", "datetime", "bool")
UNKNOWN = "unknown"  # a CSV column whose sampled values are all empty
CSV_HEAD_BYTES = 256 * 1024
PARQUET_BLOCK_BYTES = 64 * 1024
SAMPLE_ROWS = 1000
SAMPLE_PREFIX = "sample."  # sample columns in the GX frame: "sample.<column>"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_COMMON_KEYS = ("name", "version", "kind", "description")
_TABLE_KEYS = ("format", "select", "columns", "non_null", "freshness", "allow_extra")
_ZARR_KEYS = ("variables", "coordinates", "allow_extra")


# ------------------------------------------------------------------------------------ contracts


@dataclass(frozen=True)
class Freshness:
    column: str
    max_age_days: float


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    dims: tuple[str, ...]


@dataclass(frozen=True)
class Contract:
    """A validated contract file. ``columns``/``variables``/``coordinates`` keep the file's order."""

    name: str
    version: int
    kind: str  # "table" | "zarr"
    path: str = ""
    description: str = ""
    format: str | None = None  # "csv" | "parquet"
    select: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    non_null: tuple[str, ...] = ()
    freshness: Freshness | None = None
    allow_extra: bool = False
    variables: Mapping[str, ArraySpec] = field(default_factory=dict)
    coordinates: Mapping[str, str] = field(default_factory=dict)

    @property
    def needs_sample(self) -> bool:
        """True when the contract checks data values (non-null keys, freshness), not only the schema."""
        return self.kind == "table" and bool(self.non_null or self.freshness)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "kind": self.kind}
        if self.kind == "table":
            out.update(format=self.format, select=self.select, columns=dict(self.columns), non_null=list(self.non_null))
            if self.freshness:
                out["freshness"] = {"column": self.freshness.column, "max_age_days": self.freshness.max_age_days}
        else:
            out["variables"] = {n: {"dtype": s.dtype, "dims": list(s.dims)} for n, s in self.variables.items()}
            out["coordinates"] = dict(self.coordinates)
        out["allow_extra"] = self.allow_extra
        return out


def contract_path(path_or_name: str | os.PathLike, *, contracts_dir: str | os.PathLike | None = None) -> Path:
    """A path as given, or ``<contracts dir>/<name>.yaml`` for a bare name (or a bare file name).

    The contracts dir is ``contracts_dir``, else ``$GREENLIGHT_CONTRACTS_DIR``, else ``include/contracts``.
    """
    text = os.fspath(path_or_name)
    base = Path(contracts_dir or os.environ.get(CONTRACTS_ENV) or CONTRACTS_DIR)
    if isinstance(path_or_name, os.PathLike) or "/" in text or os.sep in text:
        return Path(text)
    if text.endswith((".yaml", ".yml")):
        return Path(text) if Path(text).exists() else base / text
    return base / f"{text}.yaml"


def available_contracts(contracts_dir: str | os.PathLike | None = None) -> list[str]:
    base = Path(contracts_dir or os.environ.get(CONTRACTS_ENV) or CONTRACTS_DIR)
    return sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []


def load_contract(path_or_name: str | os.PathLike, *, contracts_dir: str | os.PathLike | None = None) -> Contract:
    """Load and validate one contract file; :class:`ConfigError` names the file and the key at fault."""
    import yaml

    path = contract_path(path_or_name, contracts_dir=contracts_dir)
    if not path.is_file():
        known = available_contracts(path.parent)
        hint = f" (contracts in {path.parent}: {', '.join(known)})" if known else ""
        raise ConfigError(f"contract {os.fspath(path_or_name)!r}: file {path} not found{hint}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"contract {path}: cannot read it as YAML: {exc}") from exc
    return parse_contract(doc, source=str(path), expected_name=path.stem)


def _suggest(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_contract(doc: Any, *, source: str = "<contract>", expected_name: str | None = None) -> Contract:
    """Validate a parsed contract document (see the module docstring for the format)."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"contract {source}: {key}: {message}")

    if not isinstance(doc, dict):
        raise ConfigError(f"contract {source}: expected a mapping of keys at the top level, got {type(doc).__name__}")
    for key in doc:
        if not isinstance(key, str) or key not in (*_COMMON_KEYS, *_TABLE_KEYS, *_ZARR_KEYS):
            allowed = ", ".join((*_COMMON_KEYS, *_TABLE_KEYS, "variables", "coordinates"))
            raise fail(str(key), f"unknown key{_suggest(key, allowed.split(', '))}; allowed keys: {allowed}")
    for key in ("name", "version", "kind"):
        if key not in doc:
            raise fail(key, "is required")

    name = doc["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail("name", f"must be a simple name (letters, digits, _ . -), got {name!r}")
    if expected_name is not None and name != expected_name:
        raise fail("name", f"{name!r} does not match the file name {expected_name!r}.yaml")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("version", f"must be an integer >= 1, got {version!r}")
    kind = doc["kind"]
    if kind not in ("table", "zarr"):
        raise fail("kind", f"must be 'table' or 'zarr', got {kind!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "must be a string")
    allowed = _TABLE_KEYS if kind == "table" else _ZARR_KEYS
    for key in doc:
        if key not in _COMMON_KEYS and key not in allowed:
            raise fail(key, f"is not allowed for kind: {kind} (allowed: {', '.join(allowed)})")
    allow_extra = doc.get("allow_extra", False)
    if not isinstance(allow_extra, bool):
        raise fail("allow_extra", f"must be true or false, got {allow_extra!r}")
    common = {"name": name, "version": version, "kind": kind, "path": source, "description": description}
    if kind == "table":
        return _parse_table(doc, fail, common, allow_extra)
    return _parse_zarr(doc, fail, common, allow_extra)


def _names(value: Any, key: str, fail) -> None:
    if not isinstance(value, dict) or not value:
        raise fail(key, "must be a non-empty mapping of name: type")
    for k in value:
        if not isinstance(k, str) or not k:
            raise fail(key, f"names must be strings: quote {k!r} in the YAML")


def _parse_table(doc: dict, fail, common: dict, allow_extra: bool) -> Contract:
    fmt = doc.get("format")
    if fmt not in ("csv", "parquet"):
        raise fail("format", f"must be 'csv' or 'parquet', got {fmt!r}")
    select = doc.get("select")
    if not isinstance(select, str) or not select.strip():
        raise fail("select", "is required: a glob relative to the prefix, e.g. '*.csv'")
    if select.startswith("/") or ".." in select.split("/"):
        raise fail("select", f"{select!r} must be relative to the prefix (no leading '/' or '..')")
    columns = doc.get("columns")
    _names(columns, "columns", fail)
    for col, typ in columns.items():
        if typ not in LOGICAL_TYPES:
            raise fail(
                f"columns.{col}",
                f"unknown type {typ!r}{_suggest(typ, LOGICAL_TYPES)}; use one of {', '.join(LOGICAL_TYPES)}",
            )
    non_null = doc.get("non_null", [])
    if not isinstance(non_null, list) or not all(isinstance(c, str) for c in non_null):
        raise fail("non_null", "must be a list of column names")
    for col in non_null:
        if col not in columns:
            raise fail("non_null", f"{col!r} is not one of the contract's columns{_suggest(col, columns)}")
    freshness = None
    if doc.get("freshness") is not None:
        fresh = doc["freshness"]
        if not isinstance(fresh, dict):
            raise fail("freshness", "must be a mapping {column: ..., max_age_days: ...}")
        for key in fresh:
            if key not in ("column", "max_age_days"):
                raise fail(f"freshness.{key}", "unknown key (allowed: column, max_age_days)")
        col = fresh.get("column")
        if col not in columns:
            raise fail("freshness.column", f"{col!r} is not one of the contract's columns")
        if columns[col] not in ("date", "datetime"):
            raise fail("freshness.column", f"{col!r} must be a date or datetime column, it is {columns[col]}")
        age = fresh.get("max_age_days")
        if isinstance(age, bool) or not isinstance(age, int | float) or not math.isfinite(age) or age <= 0:
            raise fail("freshness.max_age_days", f"must be a number > 0, got {age!r}")
        freshness = Freshness(col, float(age))
    return Contract(
        **common,
        format=fmt,
        select=select.strip(),
        columns=dict(columns),
        non_null=tuple(non_null),
        freshness=freshness,
        allow_extra=allow_extra,
    )


def _contract_dtype(value: Any, key: str, fail) -> str:
    if not isinstance(value, str) or not value:
        raise fail(key, f"must be a numpy dtype name such as float32, got {value!r}")
    normalised = dtype_name(value)
    if normalised is None:
        raise fail(key, f"{value!r} is not a numpy dtype (e.g. float32, float64, int64, bool)")
    return normalised


def _parse_zarr(doc: dict, fail, common: dict, allow_extra: bool) -> Contract:
    variables: dict[str, ArraySpec] = {}
    coordinates: dict[str, str] = {}
    raw_vars = doc.get("variables", {})
    raw_coords = doc.get("coordinates", {})
    if not raw_vars and not raw_coords:
        raise fail("variables", "a zarr contract needs variables and/or coordinates")
    if raw_vars:
        _names(raw_vars, "variables", fail)
        for var, spec in raw_vars.items():
            if not isinstance(spec, dict):
                raise fail(f"variables.{var}", "must be a mapping {dtype: ..., dims: [...]}")
            for key in spec:
                if key not in ("dtype", "dims"):
                    raise fail(f"variables.{var}.{key}", "unknown key (allowed: dtype, dims)")
            dims = spec.get("dims")
            if not isinstance(dims, list) or not dims or not all(isinstance(d, str) and d for d in dims):
                raise fail(f"variables.{var}.dims", f"must be a non-empty list of dimension names, got {dims!r}")
            variables[var] = ArraySpec(_contract_dtype(spec.get("dtype"), f"variables.{var}.dtype", fail), tuple(dims))
    if raw_coords:
        _names(raw_coords, "coordinates", fail)
        for coord, dtype in raw_coords.items():
            if coord in variables:
                raise fail(f"coordinates.{coord}", "is also listed under variables")
            coordinates[coord] = _contract_dtype(dtype, f"coordinates.{coord}", fail)
    return Contract(**common, variables=variables, coordinates=coordinates, allow_extra=allow_extra)


def dtype_name(value: Any) -> str | None:
    """numpy's name for a dtype spec ('<f4' -> 'float32'), or None when numpy does not know it."""
    import numpy as np

    try:
        return np.dtype(value).name
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------- S3 helpers


def _loc(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _dir(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _s3_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _list(client, bucket: str, prefix: str, *, delimiter: str | None = None) -> tuple[list[dict], list[str]]:
    """(objects, sub-prefixes) under ``prefix``, all pages."""
    from greenlight.storage.s3 import list_pages

    objects: list[dict] = []
    subdirs: list[str] = []
    try:
        for page in list_pages(client, bucket, prefix, delimiter=delimiter):
            objects.extend(page.get("Contents", ()))
            subdirs.extend(cp["Prefix"] for cp in page.get("CommonPrefixes", ()))
    except _s3_errors() as exc:
        raise ContractError(_loc(bucket, prefix), f"cannot list the prefix: {_code(exc) or exc}") from exc
    return objects, subdirs


def _get(client, bucket: str, key: str, *, byte_range: str | None = None, missing_ok: bool = False) -> bytes | None:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if byte_range:
        kwargs["Range"] = byte_range
    try:
        response = client.get_object(**kwargs)
        return response["Body"].read()
    except _s3_errors() as exc:
        if missing_ok and _code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise ContractError(_loc(bucket, key), f"cannot read the object: {_code(exc) or exc}") from exc


def _glob_regex(pattern: str) -> re.Pattern:
    """``*``/``?`` within one path segment, ``**`` across segments, ``[...]`` character classes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def find_object(client, bucket: str, prefix: str, select: str, *, missing_ok: bool = False) -> dict | None:
    """The newest object under ``prefix`` whose relative key matches ``select`` (ties: the last key).

    Returns ``{"key", "size", "etag", "last_modified"}``. A missing/empty prefix or no match raises
    :class:`ContractError` (or returns None with ``missing_ok``).
    """
    prefix = _dir(prefix)
    regex = _glob_regex(select)
    objects, subdirs = _list(client, bucket, prefix, delimiter=None if "/" in select or "**" in select else "/")
    if not objects and not subdirs:
        if missing_ok:
            return None
        raise ContractError(_loc(bucket, prefix), "the prefix is missing or empty")
    matches = [o for o in objects if regex.match(o["Key"][len(prefix) :])]
    if not matches:
        if missing_ok:
            return None
        seen = ", ".join(o["Key"][len(prefix) :] for o in objects[:5]) or "only sub-prefixes"
        raise ContractError(_loc(bucket, prefix), f"no object matches {select!r} (found: {seen})")
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    newest = max(matches, key=lambda o: (o.get("LastModified") or epoch, o["Key"]))
    modified = newest.get("LastModified")
    return {
        "key": newest["Key"],
        "size": int(newest.get("Size", 0)),
        "etag": str(newest.get("ETag", "")).strip('"'),
        "last_modified": modified.isoformat() if hasattr(modified, "isoformat") else modified,
    }


# ------------------------------------------------------------------------------- value helpers


def _now(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def _jsonable(value: Any) -> Any:
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
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _is_null(value: Any) -> bool:
    """None, NaN, pandas NA/NaT, or an empty string (CSV cannot tell empty from null)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _as_date(value: Any) -> dt.date | None:
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


def _as_utc(value: Any) -> dt.datetime | None:
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


def freshness_cutoff(contract: Contract, now: dt.datetime | None = None) -> dt.datetime | None:
    """The oldest acceptable newest value of the freshness column (UTC), or None without freshness."""
    if contract.freshness is None:
        return None
    return _now(now) - dt.timedelta(days=contract.freshness.max_age_days)


# --------------------------------------------------------------------------------- table types


def logical_type(dtype: Any, values: Any = None) -> str:
    """Map a pyarrow type, a pandas dtype (numpy or Arrow-backed) to string/int/float/date/datetime/bool.

    An object column is inspected: all ISO dates -> date, all ISO datetimes -> datetime. Types with
    no logical equivalent (decimal, binary, nested) keep their native name, so they never match a
    contract type silently.
    """
    import pyarrow as pa

    arrow = getattr(dtype, "pyarrow_dtype", None) if not isinstance(dtype, pa.DataType) else dtype
    if arrow is not None:
        t = arrow
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_null(t):
            return UNKNOWN
        if pa.types.is_boolean(t):
            return "bool"
        if pa.types.is_integer(t):
            return "int"
        if pa.types.is_floating(t):
            return "float"
        if pa.types.is_date(t):
            return "date"
        if pa.types.is_timestamp(t):
            return "datetime"
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or getattr(pa.types, "is_string_view", lambda _t: False)(t)
        ):
            return _string_or_temporal(values)
        return str(t)
    import numpy as np
    import pandas as pd

    kind = np.dtype(dtype).kind if not isinstance(dtype, pd.api.extensions.ExtensionDtype) else None
    if isinstance(dtype, pd.StringDtype):
        return _string_or_temporal(values)
    if kind == "b" or str(dtype) == "boolean":
        return "bool"
    if kind in ("i", "u") or str(dtype).startswith(("Int", "UInt")):
        return "int"
    if kind == "f" or str(dtype).startswith("Float"):
        return UNKNOWN if values is not None and all(_is_null(v) for v in values) else "float"
    if kind == "M" or isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime"
    if kind in ("O", "U", "S"):
        return _string_or_temporal(values)
    return str(dtype)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _string_or_temporal(values: Any) -> str:
    if values is None:
        return "string"
    present = [v for v in values if not _is_null(v)]
    if not present:
        return UNKNOWN
    if all(isinstance(v, dt.datetime) for v in present):
        return "datetime"
    if all(isinstance(v, dt.date) for v in present):
        return "date"
    if all(isinstance(v, str) for v in present):
        if all(_DATE_RE.match(v) and _as_date(v) for v in present):
            return "date"
        if all(_DATETIME_RE.match(v) and _as_utc(v) for v in present):
            return "datetime"
    return "string"


# ------------------------------------------------------------------------------------ CSV/parquet


def _read_csv_head(client, bucket: str, obj: dict):
    """(DataFrame of the complete lines in the first 256 KiB, bytes fetched, whole file read?)."""
    import pandas as pd
    import pyarrow as pa

    key, size = obj["key"], obj["size"]
    if size == 0:
        raise ContractError(_loc(bucket, key), "the file is empty (0 bytes)")
    whole = size <= CSV_HEAD_BYTES
    data = _get(client, bucket, key, byte_range=None if whole else f"bytes=0-{CSV_HEAD_BYTES - 1}")
    fetched = len(data)
    if not whole:
        cut = data.rfind(b"\n")
        if cut < 0:
            raise ContractError(_loc(bucket, key), f"no complete line in the first {CSV_HEAD_BYTES} bytes")
        data = data[: cut + 1]  # drop the trailing partial line
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        frame = pd.read_csv(io.BytesIO(data), engine="pyarrow", dtype_backend="pyarrow")
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise ContractError(_loc(bucket, key), f"not a readable CSV file: {exc}") from exc
    return frame, fetched, whole


def _frame_records(frame, columns: list[str], max_rows: int, *, empty_is_null: bool) -> list[dict]:
    head = frame.head(max_rows)
    cols = {c: head[c].tolist() for c in columns if c in head.columns}
    rows = []
    for i in range(len(head)):
        record = {}
        for c, values in cols.items():
            v = _jsonable(values[i])
            record[c] = None if empty_is_null and v == "" else v
        rows.append(record)
    return rows


class _RangedFile(io.RawIOBase):
    """A read-only, seekable file over one S3 object that fetches only the byte ranges asked for.

    Reads are served from a single cached window of at least ``block`` bytes; pyarrow's first read
    of a parquet file is its footer (the last 64 KiB), so the schema costs one ranged GET.
    """

    def __init__(self, client, bucket: str, key: str, size: int, *, block: int = PARQUET_BLOCK_BYTES):
        super().__init__()
        self._client, self._bucket, self._key, self._size, self._block = client, bucket, key, size, block
        self._pos = 0
        self._cache_start = 0
        self._cache = b""
        self.requests: list[str] = []
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        end = min(self._pos + n, self._size)
        if end <= self._pos:
            return b""
        if not (self._cache_start <= self._pos and end <= self._cache_start + len(self._cache)):
            start = self._pos
            stop = max(end, min(self._size, start + self._block))
            byte_range = f"bytes={start}-{stop - 1}"
            self.requests.append(byte_range)
            self._cache = _get(self._client, self._bucket, self._key, byte_range=byte_range) or b""
            self._cache_start = start
            self.bytes_read += len(self._cache)
        offset = self._pos - self._cache_start
        data = self._cache[offset : offset + end - self._pos]
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)


def _parquet_file(client, bucket: str, obj: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if obj["size"] < 12:
        raise ContractError(_loc(bucket, obj["key"]), f"not a parquet file ({obj['size']} bytes)")
    handle = _RangedFile(client, bucket, obj["key"], obj["size"])
    try:
        return pq.ParquetFile(handle), handle
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise ContractError(_loc(bucket, obj["key"]), f"not a readable parquet file: {exc}") from exc


def _table_schema(
    contract: Contract, bucket: str, prefix: str, obj: dict, columns: dict, native: dict, **extra
) -> dict:
    return {
        "kind": "table",
        "format": contract.format,
        "contract": contract.name,
        "bucket": bucket,
        "prefix": prefix,
        "key": obj["key"],
        "keys": [obj["key"]],
        "etag": obj["etag"],
        "size": obj["size"],
        "last_modified": obj["last_modified"],
        "columns": columns,
        "native_types": native,
        **extra,
    }


def _sample_columns(contract: Contract) -> list[str]:
    cols = list(contract.non_null)
    if contract.freshness and contract.freshness.column not in cols:
        cols.append(contract.freshness.column)
    return cols


def _read_table(
    client, bucket, prefix, contract, *, want_schema, want_sample, key=None, max_rows=SAMPLE_ROWS, missing_ok=False
):
    prefix = _dir(prefix)
    if key is None:
        obj = find_object(client, bucket, prefix, contract.select, missing_ok=missing_ok)
        if obj is None:
            return None, None
    else:
        head = _head(client, bucket, key)
        obj = {"key": key, **head}
    schema = sample = None
    wanted = _sample_columns(contract)
    if contract.format == "csv":
        frame, fetched, whole = _read_csv_head(client, bucket, obj)
        if want_schema:
            columns = {str(c): logical_type(frame[c].dtype, frame[c].tolist()) for c in frame.columns}
            native = {str(c): str(frame[c].dtype) for c in frame.columns}
            schema = _table_schema(
                contract,
                bucket,
                prefix,
                obj,
                columns,
                native,
                bytes_read=fetched,
                rows_read=len(frame),
                whole_file=whole,
            )
        if want_sample:
            sample = _frame_records(frame, wanted, max_rows, empty_is_null=True)
    else:
        import pyarrow as pa

        pf, handle = _parquet_file(client, bucket, obj)
        arrow_schema = pf.schema_arrow
        if want_schema:
            columns = {f.name: logical_type(f.type) for f in arrow_schema}
            native = {f.name: str(f.type) for f in arrow_schema}
            schema = _table_schema(
                contract,
                bucket,
                prefix,
                obj,
                columns,
                native,
                num_rows=pf.metadata.num_rows,
                row_groups=pf.num_row_groups,
            )
        if want_sample:
            present = [c for c in wanted if c in arrow_schema.names]
            try:
                batch = next(iter(pf.iter_batches(batch_size=max_rows, columns=present)), None)
            except (ValueError, OSError, pa.ArrowException) as exc:
                raise ContractError(_loc(bucket, obj["key"]), f"cannot read parquet rows: {exc}") from exc
            if batch is None:
                sample = []
            else:
                data = {c: batch.column(c).to_pylist() for c in present}
                sample = [{c: _jsonable(data[c][i]) for c in present} for i in range(batch.num_rows)]
        if schema is not None:
            schema["bytes_read"] = handle.bytes_read
            schema["ranges_read"] = list(handle.requests)
    return schema, sample


def _head(client, bucket: str, key: str) -> dict:
    try:
        response = client.head_object(Bucket=bucket, Key=key)
    except _s3_errors() as exc:
        raise ContractError(_loc(bucket, key), f"cannot read the object: {_code(exc) or exc}") from exc
    modified = response.get("LastModified")
    return {
        "size": int(response.get("ContentLength", 0)),
        "etag": str(response.get("ETag", "")).strip('"'),
        "last_modified": modified.isoformat() if hasattr(modified, "isoformat") else modified,
    }


# ------------------------------------------------------------------------------------------ zarr


def _get_json(client, bucket: str, key: str, read: list[str], *, missing_ok: bool = True) -> Any:
    body = _get(client, bucket, key, missing_ok=missing_ok)
    if body is None:
        return None
    read.append(key)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(_loc(bucket, key), f"not valid JSON: {exc}") from exc


def _array_v2(zarray: Any, attrs: Any, where: str) -> dict:
    if not isinstance(zarray, dict):
        raise ContractError(where, "a .zarray document must be a JSON object")
    dims = (attrs or {}).get("_ARRAY_DIMENSIONS") if isinstance(attrs, dict) else None
    raw = zarray.get("dtype")
    return {
        "dtype": dtype_name(raw) or json.dumps(raw),
        "dims": list(dims) if isinstance(dims, list) else None,
        "shape": zarray.get("shape"),
    }


def _array_v3(meta: Any, where: str) -> dict:
    if not isinstance(meta, dict):
        raise ContractError(where, "an array zarr.json must be a JSON object")
    raw = meta.get("data_type")
    dims = meta.get("dimension_names")
    return {
        "dtype": (dtype_name(raw) or raw) if isinstance(raw, str) else json.dumps(raw),
        "dims": list(dims) if isinstance(dims, list) else None,
        "shape": meta.get("shape"),
    }


def _walk(client, bucket: str, root: str, subdirs: list[str], fmt: int, read: list[str], arrays: dict) -> None:
    """Non-consolidated stores: each sub-prefix's own metadata documents, groups recursively."""

    def one(sub: str):
        name = sub[len(root) :].rstrip("/")
        if fmt == 2:
            zarray = _get_json(client, bucket, sub + ".zarray", read)
            if zarray is not None:
                attrs = _get_json(client, bucket, sub + ".zattrs", read)
                return name, _array_v2(zarray, attrs, _loc(bucket, sub + ".zarray")), None
            if _get_json(client, bucket, sub + ".zgroup", read) is not None:
                return name, None, sub
            return name, None, None
        meta = _get_json(client, bucket, sub + "zarr.json", read)
        if isinstance(meta, dict) and meta.get("node_type") == "array":
            return name, _array_v3(meta, _loc(bucket, sub + "zarr.json")), None
        if isinstance(meta, dict) and meta.get("node_type") == "group":
            return name, None, sub
        return name, None, None

    groups = []
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(subdirs)))) as pool:
        for name, array, group in pool.map(one, subdirs):
            if array is not None:
                arrays[name] = array
            elif group is not None:
                groups.append(group)
    for group in groups:
        _, nested = _list(client, bucket, group, delimiter="/")
        sub_arrays: dict = {}
        _walk(client, bucket, group, nested, fmt, read, sub_arrays)
        prefix = group[len(root) :]
        arrays.update({prefix + n: a for n, a in sub_arrays.items()})


def _read_zarr(client, bucket: str, prefix: str, contract: Contract, *, missing_ok: bool = False) -> dict | None:
    prefix = _dir(prefix)
    where = _loc(bucket, prefix)
    objects, subdirs = _list(client, bucket, prefix, delimiter="/")
    if not objects and not subdirs:
        if missing_ok:
            return None
        raise ContractError(where, "the prefix is missing or empty")
    files = {o["Key"][len(prefix) :] for o in objects}
    read: list[str] = []
    arrays: dict[str, dict] = {}
    consolidated = False
    if ".zmetadata" in files:
        fmt, consolidated = 2, True
        doc = _get_json(client, bucket, prefix + ".zmetadata", read, missing_ok=False)
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(meta, dict):
            raise ContractError(_loc(bucket, prefix + ".zmetadata"), "no 'metadata' object in consolidated metadata")
        for key, value in meta.items():
            if key.endswith("/.zarray"):
                name = key[: -len("/.zarray")]
                arrays[name] = _array_v2(value, meta.get(f"{name}/.zattrs"), _loc(bucket, prefix + key))
    elif "zarr.json" in files:
        fmt = 3
        root = _get_json(client, bucket, prefix + "zarr.json", read, missing_ok=False)
        if not isinstance(root, dict) or root.get("node_type") != "group":
            raise ContractError(_loc(bucket, prefix + "zarr.json"), "the root zarr.json is not a Zarr v3 group")
        cm = root.get("consolidated_metadata")
        if isinstance(cm, dict) and isinstance(cm.get("metadata"), dict):
            consolidated = True
            for name, meta in cm["metadata"].items():
                if isinstance(meta, dict) and meta.get("node_type") == "array":
                    arrays[name] = _array_v3(meta, _loc(bucket, prefix + "zarr.json"))
        else:
            _walk(client, bucket, prefix, subdirs, 3, read, arrays)
    elif ".zgroup" in files:
        fmt = 2
        _walk(client, bucket, prefix, subdirs, 2, read, arrays)
    else:
        shown = ", ".join(sorted(files)[:5]) or "only sub-prefixes"
        raise ContractError(
            where, f"no Zarr group metadata (.zmetadata, .zgroup or zarr.json) at the root (found: {shown})"
        )
    if not arrays:
        raise ContractError(where, f"the Zarr v{fmt} group holds no arrays")
    variables, coordinates = {}, {}
    for name in sorted(arrays):
        spec = arrays[name]
        base = name.rsplit("/", 1)[-1]
        (coordinates if spec["dims"] == [base] else variables)[name] = spec
    return {
        "kind": "zarr",
        "contract": contract.name,
        "bucket": bucket,
        "prefix": prefix,
        "zarr_format": fmt,
        "consolidated": consolidated,
        "keys": sorted(set(read)),
        "variables": variables,
        "coordinates": coordinates,
    }


# ------------------------------------------------------------------------------------ public I/O


def read_artefact(
    client,
    bucket: str,
    prefix: str,
    contract: Contract,
    *,
    now: dt.datetime | None = None,
    max_rows: int = SAMPLE_ROWS,
    missing_ok: bool = False,
) -> tuple[dict | None, list[dict] | None]:
    """(schema, sample) in one pass: a table's sample comes from the same reads as its schema.

    The sample is None for zarr and for tables whose contract checks no values. With
    ``missing_ok`` a missing prefix (or no matching object) gives ``(None, None)`` instead of a
    :class:`ContractError` (use it for the prod side on a first promotion).
    """
    if contract.kind == "zarr":
        schema = _read_zarr(client, bucket, prefix, contract, missing_ok=missing_ok)
        sample = None
    else:
        schema, sample = _read_table(
            client,
            bucket,
            prefix,
            contract,
            want_schema=True,
            want_sample=contract.needs_sample,
            max_rows=max_rows,
            missing_ok=missing_ok,
        )
    if schema is not None:
        schema["read_at"] = _now(now).isoformat()
    return schema, sample


def read_schema(
    client, bucket: str, prefix: str, contract: Contract, *, now: dt.datetime | None = None, missing_ok: bool = False
) -> dict | None:
    """What the artefact under ``s3://bucket/prefix`` looks like (JSON-serialisable).

    Tables: ``{"kind": "table", "key", "keys", "columns": {name: logical type}, "native_types", ...}``
    read from the newest object matching ``contract.select``. Zarr: ``{"kind": "zarr",
    "zarr_format", "keys", "variables": {name: {"dtype", "dims", "shape"}}, "coordinates": {...}}``
    read from metadata documents only. Raises :class:`ContractError` naming the bucket, prefix or
    key when nothing can be read (or returns None for a missing prefix with ``missing_ok``).
    """
    if contract.kind == "zarr":
        schema = _read_zarr(client, bucket, prefix, contract, missing_ok=missing_ok)
    else:
        schema, _ = _read_table(
            client, bucket, prefix, contract, want_schema=True, want_sample=False, missing_ok=missing_ok
        )
    if schema is not None:
        schema["read_at"] = _now(now).isoformat()
    return schema


def read_table_sample(
    client, bucket: str, prefix: str, contract: Contract, *, key: str | None = None, max_rows: int = SAMPLE_ROWS
) -> list[dict]:
    """Up to ``max_rows`` records of the columns the contract checks values of (non_null, freshness).

    ``key`` (e.g. ``schema["key"]``) pins the object; otherwise the newest match is found again.
    CSV: from the first 256 KiB; parquet: the first rows of only those columns (ranged GETs).
    """
    if contract.kind != "table":
        raise ValueError(f"contract {contract.name} is kind {contract.kind}: only tables have a data sample")
    _, sample = _read_table(
        client, bucket, prefix, contract, want_schema=False, want_sample=True, key=key, max_rows=max_rows
    )
    return sample or []


# ------------------------------------------------------------------------------------ comparison


def _spec_text(role: str, spec: tuple[str, tuple | None]) -> str:
    dtype, dims = spec
    if role == "variable":
        return f"{dtype}({', '.join(dims) if dims is not None else '?'})"
    return dtype


def _specs(schema_or_contract: Any, role: str) -> dict[str, tuple[str, tuple | None]]:
    """name -> (dtype, dims or None) for columns / variables / coordinates, from a schema or contract."""
    if isinstance(schema_or_contract, Contract):
        c = schema_or_contract
        if role == "column":
            return {n: (t, None) for n, t in c.columns.items()}
        if role == "variable":
            return {n: (s.dtype, tuple(s.dims)) for n, s in c.variables.items()}
        return {n: (t, None) for n, t in c.coordinates.items()}
    s = schema_or_contract
    if role == "column":
        return {n: (t, None) for n, t in s.get("columns", {}).items()}
    key = "variables" if role == "variable" else "coordinates"
    out = {}
    for n, spec in s.get(key, {}).items():
        dims = spec.get("dims")
        out[n] = (spec.get("dtype"), tuple(dims) if dims is not None and role == "variable" else None)
    return out


def _diff(role: str, expected: dict, observed: dict, *, allow_extra: bool, record, unknown_ok=False) -> list[dict]:
    out: list[dict] = []
    missing = [n for n in expected if n not in observed]
    added = [n for n in observed if n not in expected]
    renamed: dict[str, str] = {}
    for name in missing:
        candidates = [a for a in added if observed[a] == expected[name]]
        if len(candidates) == 1 and sum(expected[m] == observed[candidates[0]] for m in missing) == 1:
            renamed[name] = candidates[0]
    retype_check = "column_retyped" if role == "column" else "dtype_changed"
    for name, spec in expected.items():
        if name in renamed:
            new = renamed[name]
            out.append(
                record(
                    f"{role}_renamed",
                    role,
                    name,
                    name,
                    new,
                    f"{role} {name!r} ({_spec_text(role, spec)}) is missing and a new {role} {new!r} of the same type "
                    f"appeared: renamed to {new!r}?",
                )
            )
        elif name not in observed:
            out.append(
                record(
                    f"{role}_missing",
                    role,
                    name,
                    _spec_text(role, spec),
                    None,
                    f"{role} {name!r} ({_spec_text(role, spec)}) is missing",
                )
            )
        else:
            (exp_type, exp_dims), (obs_type, obs_dims) = spec, observed[name]
            if exp_type != obs_type and not (unknown_ok and obs_type == UNKNOWN):
                note = " (all sampled values are empty)" if obs_type == UNKNOWN else ""
                out.append(
                    record(
                        retype_check,
                        role,
                        name,
                        exp_type,
                        obs_type,
                        f"{role} {name!r} should be {exp_type} but is {obs_type}{note}",
                    )
                )
            if exp_dims is not None and obs_dims is not None and tuple(exp_dims) != tuple(obs_dims):
                out.append(
                    record(
                        "dims_changed",
                        role,
                        name,
                        list(exp_dims),
                        list(obs_dims),
                        f"{role} {name!r} should have dims ({', '.join(exp_dims)}) but has ({', '.join(obs_dims)})",
                    )
                )
    if not allow_extra:
        for name in added:
            if name not in renamed.values():
                spec = observed[name]
                out.append(
                    record(
                        f"{role}_added",
                        role,
                        name,
                        None,
                        _spec_text(role, spec),
                        f"unexpected new {role} {name!r} ({_spec_text(role, spec)})",
                    )
                )
    return out


def _roles(kind: str) -> tuple[str, ...]:
    return ("column",) if kind == "table" else ("variable", "coordinate")


def check(
    contract: Contract,
    qa_schema: dict,
    prod_schema: dict | None = None,
    *,
    prod_contract_version: int | None = None,
    sample: list[dict] | None = None,
    now: dt.datetime | None = None,
) -> list[dict]:
    """Mismatches of the QA artefact; an empty list means it may be promoted.

    Layer ``contract``: QA against the contract (missing/added/renamed/retyped columns, variables,
    coordinates, changed dims; ``empty`` for a table without data rows; with a ``sample``:
    ``null_keys``, ``stale``).
    Layer ``drift``: QA against ``prod_schema`` (what prod holds now): any added, removed or
    retyped column/variable/coordinate, unless ``prod_contract_version`` is given and lower than
    ``contract.version`` (the contract was bumped: the change is expected).

    Each record: ``{"prefix", "contract", "layer", "check", "role", "name", "expected",
    "observed", "message"}``.
    """
    if qa_schema.get("kind") != contract.kind:
        raise ValueError(
            f"contract {contract.name} is kind {contract.kind} but the schema is kind {qa_schema.get('kind')}"
        )
    where = _loc(qa_schema.get("bucket", "?"), qa_schema.get("key") or qa_schema.get("prefix", ""))
    label = f"contract {contract.name} v{contract.version}"

    def make(layer: str, suffix: str):
        def record(check_name, role, name, expected, observed, message):
            return {
                "prefix": _loc(qa_schema.get("bucket", "?"), qa_schema.get("prefix", "")),
                "contract": contract.name,
                "layer": layer,
                "check": check_name,
                "role": role,
                "name": name,
                "expected": expected,
                "observed": observed,
                "message": f"{where}: {message}{suffix}",
            }

        return record

    out: list[dict] = []
    record = make("contract", f" ({label})")
    # A file without data rows: say so once instead of reporting every CSV column as of unknown type.
    empty = contract.kind == "table" and (
        qa_schema.get("rows_read") == 0 or qa_schema.get("num_rows") == 0 or sample == []
    )
    for role in _roles(contract.kind):
        out += _diff(
            role,
            _specs(contract, role),
            _specs(qa_schema, role),
            allow_extra=contract.allow_extra,
            record=record,
            unknown_ok=empty,
        )
    if empty:
        out.append(record("empty", "column", None, "at least one data row", 0, "the file has no data rows"))
    elif sample is not None and contract.kind == "table":
        out += _check_sample(contract, qa_schema, sample, now, record)

    drift_expected = prod_contract_version is not None and prod_contract_version < contract.version
    if prod_schema is not None and not drift_expected:
        if prod_schema.get("kind") != contract.kind:
            raise ValueError(
                f"the prod schema is kind {prod_schema.get('kind')}, contract {contract.name} is {contract.kind}"
            )
        prod_where = _loc(prod_schema.get("bucket", "?"), prod_schema.get("key") or prod_schema.get("prefix", ""))
        shown = "unknown" if prod_contract_version is None else f"v{prod_contract_version}"
        drift = make(
            "drift",
            f" (QA vs prod {prod_where}, promoted under contract {shown}, now {label}; if the change is "
            f"intended, bump the contract version once prod consumers are ready)",
        )
        for role in _roles(contract.kind):
            out += _diff(
                role,
                _specs(prod_schema, role),
                _specs(qa_schema, role),
                allow_extra=False,
                record=drift,
                unknown_ok=empty,
            )
    return out


def _check_sample(contract: Contract, qa_schema: dict, sample: list[dict], now, record) -> list[dict]:
    out: list[dict] = []
    observed = qa_schema.get("columns", {})
    for col in contract.non_null:
        if col not in observed:
            continue  # reported as missing/renamed already
        nulls = sum(1 for row in sample if _is_null(row.get(col)))
        if nulls:
            out.append(
                record(
                    "null_keys",
                    "column",
                    col,
                    0,
                    nulls,
                    f"key column {col!r} is empty in {nulls} of the {len(sample)} sampled rows",
                )
            )
    fresh = contract.freshness
    if fresh and fresh.column in observed and observed[fresh.column] in ("date", "datetime"):
        cutoff = freshness_cutoff(contract, now)
        if observed[fresh.column] == "date" or contract.columns[fresh.column] == "date":
            values = [d for d in (_as_date(row.get(fresh.column)) for row in sample) if d is not None]
            newest, limit = (max(values) if values else None), cutoff.date()
        else:
            values = [d for d in (_as_utc(row.get(fresh.column)) for row in sample) if d is not None]
            newest, limit = (max(values) if values else None), cutoff
        if newest is None or newest < limit:
            age = f"{(_now(now).date() - _as_date(newest)).days} days old" if newest is not None else "no value"
            out.append(
                record(
                    "stale",
                    "column",
                    fresh.column,
                    f">= {limit.isoformat()}",
                    newest.isoformat() if newest is not None else None,
                    f"newest {fresh.column} is {newest.isoformat() if newest is not None else 'missing'} ({age}); "
                    f"at most {fresh.max_age_days:g} days old is allowed (>= {limit.isoformat()})",
                )
            )
    return out


# ------------------------------------------------------------------------------ Great Expectations

SCHEMA_FRAME_COLUMNS = ["part", "role", "name", "dtype", "dims", "signature"]


def signature(role: str, name: str, dtype: str | None, dims: Any = None) -> str:
    """One schema element as text: ``column:forecast_yield:float``, ``coordinate:lat:float64``,
    ``variable:stress_index:float32(time,lat,lon)``."""
    text = f"{role}:{name}:{dtype}"
    if role == "variable":
        text += f"({','.join(dims) if dims is not None else '?'})"
    return text


def expected_signatures(contract: Contract) -> list[str]:
    return sorted(
        signature(role, name, dtype, dims)
        for role in _roles(contract.kind)
        for name, (dtype, dims) in _specs(contract, role).items()
    )


def schema_frame(schema: dict, sample: list[dict] | None = None):
    """A pandas DataFrame for GX: one ``part == "schema"`` row per column/variable/coordinate
    (``role, name, dtype, dims, signature``), then, with a ``sample``, one ``part == "sample"``
    row per sampled record whose values are in ``sample.<column>`` columns (date columns as
    ``datetime.date``, datetime columns as naive-UTC timestamps)."""
    import pandas as pd

    rows = []
    for role in _roles(schema.get("kind", "table")):
        for name, (dtype, dims) in _specs(schema, role).items():
            shown_dims = ",".join(dims) if dims is not None else (name if role == "coordinate" else None)
            rows.append(
                {
                    "part": "schema",
                    "role": role,
                    "name": name,
                    "dtype": dtype,
                    "dims": shown_dims,
                    "signature": signature(role, name, dtype, dims),
                }
            )
    frame = pd.DataFrame(rows, columns=SCHEMA_FRAME_COLUMNS)
    if not sample:
        return frame
    types = schema.get("columns", {})
    columns = list(dict.fromkeys(c for row in sample for c in row))
    data: dict[str, Any] = {"part": ["sample"] * len(sample)}
    for col in columns:
        values = [None if _is_null(row.get(col)) else row.get(col) for row in sample]
        if types.get(col) == "date":  # datetime.date objects: GX compares them with a date min_value
            data[SAMPLE_PREFIX + col] = pd.Series([_as_date(v) for v in values], dtype="object")
        elif types.get(col) == "datetime":
            parsed = pd.to_datetime(pd.Series(values, dtype="object"), errors="coerce", utc=True, format="ISO8601")
            data[SAMPLE_PREFIX + col] = parsed.dt.tz_localize(None)
        else:
            data[SAMPLE_PREFIX + col] = pd.Series(values, dtype="object")
    return pd.concat([frame, pd.DataFrame(data)], ignore_index=True)


def _quiet_gx() -> None:
    """GX logs ~200 INFO lines; one of its modules sets its own logger to INFO on import."""
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations.data_context.types.base  # noqa: F401  (sets its logger to INFO)

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)


def gx_suite(contract: Contract, *, now: dt.datetime | None = None, sample: bool = True, context=None):
    """The contract as a GX 1.x ExpectationSuite over :func:`schema_frame`'s frame.

    * the set of ``signature`` values of the schema rows equals the contract's (contains it with
      ``allow_extra``);
    * with ``sample`` (tables that check values): sample rows exist, ``sample.<key>`` values are
      not null, and the freshness column's max is at least the cutoff (``now`` - max_age_days).

    Each expectation's ``meta`` says which greenlight check it is (``schema``, ``empty``,
    ``null_keys``, ``stale``). With ``context`` (e.g. in GXValidateDataFrameOperator's
    ``configure_expectations``) the suite is added to that context, as a validation definition needs,
    and the context's progress bars are turned off.
    """
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    base_meta = {"contract": contract.name, "contract_version": contract.version}
    expectations: list = []
    schema_rows = Column("part") == "schema"
    set_expectation = (
        gx.expectations.ExpectColumnDistinctValuesToContainSet
        if contract.allow_extra
        else gx.expectations.ExpectColumnDistinctValuesToEqualSet
    )
    expectations.append(
        set_expectation(
            column="signature",
            value_set=expected_signatures(contract),
            row_condition=schema_rows,
            meta={**base_meta, "greenlight_check": "schema"},
        )
    )
    if sample and contract.needs_sample:
        sample_rows = Column("part") == "sample"
        expectations.append(
            gx.expectations.ExpectColumnDistinctValuesToContainSet(
                column="part", value_set=["schema", "sample"], meta={**base_meta, "greenlight_check": "empty"}
            )
        )
        for col in contract.non_null:
            expectations.append(
                gx.expectations.ExpectColumnValuesToNotBeNull(
                    column=SAMPLE_PREFIX + col,
                    row_condition=sample_rows,
                    meta={**base_meta, "greenlight_check": "null_keys", "name": col},
                )
            )
        if contract.freshness:
            cutoff = freshness_cutoff(contract, now)
            is_date = contract.columns[contract.freshness.column] == "date"
            minimum = cutoff.date().isoformat() if is_date else cutoff.replace(tzinfo=None).isoformat()
            expectations.append(
                gx.expectations.ExpectColumnMaxToBeBetween(
                    column=SAMPLE_PREFIX + contract.freshness.column,
                    min_value=minimum,
                    row_condition=sample_rows,
                    meta={**base_meta, "greenlight_check": "stale", "name": contract.freshness.column},
                )
            )
    # Built in the constructor: add_expectation() would need a current GX data context.
    suite = gx.ExpectationSuite(
        name=f"greenlight.{contract.name}.v{contract.version}", expectations=expectations, meta=dict(base_meta)
    )
    if len(suite.expectations) != len(expectations):  # the constructor only logs invalid ones
        raise RuntimeError(f"GX dropped expectations of contract {contract.name}: see the GX log")
    if context is not None:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in task logs
        suite = context.suites.add_or_update(suite)
    return suite


_GX: dict[str, Any] = {}


def _gx_batch_definition():
    """One ephemeral context + pandas datasource + dataframe asset + whole-frame batch definition."""
    if "batch_definition" not in _GX:
        _quiet_gx()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in task logs
        source = context.data_sources.add_pandas(name="greenlight_contracts")
        asset = source.add_dataframe_asset(name="schema_frame")
        _GX["batch_definition"] = asset.add_batch_definition_whole_dataframe(name="whole_frame")
    return _GX["batch_definition"]


def _gx_observed(result: dict) -> Any:
    if result.get("observed_value") is not None:
        return result["observed_value"]
    keys = (
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "partial_unexpected_list",
        "missing_count",
        "partial_missing_list",
    )
    return {k: result[k] for k in keys if k in result} or None


def validate_with_gx(
    contract: Contract, schema: dict, sample: list[dict] | None = None, now: dt.datetime | None = None
) -> dict:
    """Run :func:`gx_suite` on :func:`schema_frame` in an ephemeral GX context.

    Returns ``{"success", "suite", "results": [{"expectation", "check", "kwargs", "success",
    "observed", "missing"?, "unexpected"?, "exception"?}]}`` (JSON-serialisable). Sample
    expectations run only when a ``sample`` is given.
    """
    frame = schema_frame(schema, sample)
    suite = gx_suite(contract, now=now, sample=sample is not None)
    batch = _gx_batch_definition().get_batch(batch_parameters={"dataframe": frame})
    outcome = batch.validate(suite, result_format="SUMMARY")
    results = []
    for item in outcome.results:
        doc = item.to_json_dict()
        config = doc.get("expectation_config") or {}
        info = doc.get("exception_info") or {}
        results.append(
            gx_result_entry(
                config.get("type"),
                (config.get("meta") or {}).get("greenlight_check"),
                config.get("kwargs"),
                doc.get("success"),
                doc.get("result"),
                info.get("exception_message") if info.get("raised_exception") else None,
            )
        )
    out = {
        "success": bool(outcome.success),
        "suite": suite.name,
        "statistics": dict(outcome.statistics or {}),
        "results": results,
    }
    return json.loads(json.dumps(out, default=str))


def gx_result_entry(expectation, check, kwargs, success, result, exception=None) -> dict[str, Any]:
    """One expectation's outcome in greenlight's gate format (shared by the ephemeral-context
    validation here and the GX provider operator's ``describe_dict()`` in the DAG)."""
    # ``row_condition``/``condition_parser`` select schema or sample rows (``check`` says which) and
    # serialise differently in the two runners: left out so both record the same entry.
    kwargs = {k: v for k, v in (kwargs or {}).items() if k not in ("batch_id", "row_condition", "condition_parser")}
    result = result or {}
    entry: dict[str, Any] = {
        "expectation": expectation,
        "check": check,
        "kwargs": kwargs,
        "success": bool(success),
        "observed": _gx_observed(result),
    }
    if "value_set" in kwargs:  # set expectations: what the contract lacks / what is new
        entry["missing"] = sorted(map(str, result.get("partial_missing_list") or []))
        entry["unexpected"] = sorted(map(str, result.get("partial_unexpected_list") or []))
    if exception:
        entry["exception"] = exception
    return entry


# ------------------------------------------------------------------------------------ one gate


def evaluate(
    client,
    contract: Contract,
    qa_bucket: str,
    qa_prefix: str,
    *,
    prod_bucket: str | None = None,
    prod_prefix: str | None = None,
    prod_contract_version: int | None = None,
    now: dt.datetime | None = None,
    use_gx: bool = True,
) -> dict:
    """Read QA (and prod, when given; a missing prod prefix skips drift), check, and validate with GX.

    Returns ``{"contract", "version", "passed", "mismatches", "gx", "qa_schema", "prod_schema"}``;
    ``passed`` needs no mismatch and, with ``use_gx``, a successful GX validation.
    """
    qa_schema, sample = read_artefact(client, qa_bucket, qa_prefix, contract, now=now)
    prod_schema = None
    if prod_bucket is not None and prod_prefix is not None:
        prod_schema = read_schema(client, prod_bucket, prod_prefix, contract, now=now, missing_ok=True)
    mismatches = check(
        contract, qa_schema, prod_schema, prod_contract_version=prod_contract_version, sample=sample, now=now
    )
    gx_result = validate_with_gx(contract, qa_schema, sample, now) if use_gx else None
    return {
        "contract": contract.name,
        "version": contract.version,
        "passed": not mismatches and (gx_result is None or gx_result["success"]),
        "mismatches": mismatches,
        "gx": gx_result,
        "qa_schema": qa_schema,
        "prod_schema": prod_schema,
    }

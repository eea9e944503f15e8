"""Schema readers: what an artefact on S3 looks like, read with as little I/O as possible.

:func:`read_artefact` / :func:`read_schema` / :func:`read_table_sample` list once to find the object
(the newest match of the contract's ``select``) or the store, then read the first 256 KiB of a CSV,
the footer of a parquet file (ranged GETs through :class:`_RangedFile`), or the Zarr metadata
documents (:mod:`greenlight.contracts.zarrmeta`). Failures are
:class:`~greenlight.errors.ContractError` naming the bucket, prefix or key.

pandas, pyarrow and numpy are imported inside the functions that read data (marked "heavy"): each
costs seconds to import (``python -X importtime``), and DAG parsing imports this package through
``promotion.config``, which must stay cheap.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from greenlight.contracts.model import UNKNOWN, Contract
from greenlight.contracts.s3io import find_object, get_bytes, head_object, prefix_dir
from greenlight.contracts.values import as_date, as_utc, is_null, jsonable, location, utc_now
from greenlight.contracts.zarrmeta import read_zarr
from greenlight.errors import ContractError

CSV_HEAD_BYTES = 256 * 1024
PARQUET_BLOCK_BYTES = 64 * 1024
SAMPLE_ROWS = 1000


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
        schema = read_zarr(client, bucket, prefix, contract, missing_ok=missing_ok)
        sample = None
    else:
        schema, sample = read_table(
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
        schema["read_at"] = utc_now(now).isoformat()
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
        schema = read_zarr(client, bucket, prefix, contract, missing_ok=missing_ok)
    else:
        schema, _ = read_table(
            client, bucket, prefix, contract, want_schema=True, want_sample=False, missing_ok=missing_ok
        )
    if schema is not None:
        schema["read_at"] = utc_now(now).isoformat()
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
    _, sample = read_table(
        client, bucket, prefix, contract, want_schema=False, want_sample=True, key=key, max_rows=max_rows
    )
    return sample or []


def logical_type(dtype: Any, values: Any = None) -> str:
    """Map a pyarrow type, a pandas dtype (numpy or Arrow-backed) to string/int/float/date/datetime/bool.

    An object column is inspected: all ISO dates -> date, all ISO datetimes -> datetime. Types with
    no logical equivalent (decimal, binary, nested) keep their native name, so they never match a
    contract type silently.
    """
    # heavy: imported here, not at the top (see the module docstring)
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
    # heavy: imported here, not at the top (see the module docstring)
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
        return UNKNOWN if values is not None and all(is_null(v) for v in values) else "float"
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
    present = [v for v in values if not is_null(v)]
    if not present:
        return UNKNOWN
    if all(isinstance(v, dt.datetime) for v in present):
        return "datetime"
    if all(isinstance(v, dt.date) for v in present):
        return "date"
    if all(isinstance(v, str) for v in present):
        if all(_DATE_RE.match(v) and as_date(v) for v in present):
            return "date"
        if all(_DATETIME_RE.match(v) and as_utc(v) for v in present):
            return "datetime"
    return "string"


def _read_csv_head(client, bucket: str, obj: dict):
    """(DataFrame of the complete lines in the first 256 KiB, bytes fetched, whole file read?)."""
    # heavy: imported here, not at the top (see the module docstring)
    import pandas as pd
    import pyarrow as pa

    key, size = obj["key"], obj["size"]
    if size == 0:
        raise ContractError(location(bucket, key), "the file is empty (0 bytes)")
    whole = size <= CSV_HEAD_BYTES
    data = get_bytes(client, bucket, key, byte_range=None if whole else f"bytes=0-{CSV_HEAD_BYTES - 1}")
    fetched = len(data)
    if not whole:
        cut = data.rfind(b"\n")
        if cut < 0:
            raise ContractError(location(bucket, key), f"no complete line in the first {CSV_HEAD_BYTES} bytes")
        data = data[: cut + 1]  # drop the trailing partial line
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        frame = pd.read_csv(io.BytesIO(data), engine="pyarrow", dtype_backend="pyarrow")
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise ContractError(location(bucket, key), f"not a readable CSV file: {exc}") from exc
    return frame, fetched, whole


def _frame_records(frame, columns: list[str], max_rows: int, *, empty_is_null: bool) -> list[dict]:
    head = frame.head(max_rows)
    cols = {c: head[c].tolist() for c in columns if c in head.columns}
    rows = []
    for i in range(len(head)):
        record = {}
        for c, values in cols.items():
            v = jsonable(values[i])
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
            self._cache = get_bytes(self._client, self._bucket, self._key, byte_range=byte_range) or b""
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
    # heavy: imported here, not at the top (see the module docstring)
    import pyarrow as pa
    import pyarrow.parquet as pq

    if obj["size"] < 12:
        raise ContractError(location(bucket, obj["key"]), f"not a parquet file ({obj['size']} bytes)")
    handle = _RangedFile(client, bucket, obj["key"], obj["size"])
    try:
        return pq.ParquetFile(handle), handle
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise ContractError(location(bucket, obj["key"]), f"not a readable parquet file: {exc}") from exc


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


def read_table(
    client, bucket, prefix, contract, *, want_schema, want_sample, key=None, max_rows=SAMPLE_ROWS, missing_ok=False
):
    prefix = prefix_dir(prefix)
    if key is None:
        obj = find_object(client, bucket, prefix, contract.select, missing_ok=missing_ok)
        if obj is None:
            return None, None
    else:
        head = head_object(client, bucket, key)
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
        # heavy: imported here, not at the top (see the module docstring)
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
                raise ContractError(location(bucket, obj["key"]), f"cannot read parquet rows: {exc}") from exc
            if batch is None:
                sample = []
            else:
                data = {c: batch.column(c).to_pylist() for c in present}
                sample = [{c: jsonable(data[c][i]) for c in present} for i in range(batch.num_rows)]
        if schema is not None:
            schema["bytes_read"] = handle.bytes_read
            schema["ranges_read"] = list(handle.requests)
    return schema, sample

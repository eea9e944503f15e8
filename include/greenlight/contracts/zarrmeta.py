"""Zarr v2/v3 schema reader: arrays, dtypes and dimension names from the metadata documents only.

Consolidated metadata (``.zmetadata``, or ``consolidated_metadata`` in a v3 root ``zarr.json``) costs
one GET; otherwise each array's own documents are read, sub-groups recursively, in parallel. Chunk
data is never fetched.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from greenlight.contracts.model import Contract
from greenlight.contracts.s3io import get_json, list_objects, prefix_dir
from greenlight.contracts.values import dtype_name, location
from greenlight.errors import ContractError


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
            zarray = get_json(client, bucket, sub + ".zarray", read)
            if zarray is not None:
                attrs = get_json(client, bucket, sub + ".zattrs", read)
                return name, _array_v2(zarray, attrs, location(bucket, sub + ".zarray")), None
            if get_json(client, bucket, sub + ".zgroup", read) is not None:
                return name, None, sub
            return name, None, None
        meta = get_json(client, bucket, sub + "zarr.json", read)
        if isinstance(meta, dict) and meta.get("node_type") == "array":
            return name, _array_v3(meta, location(bucket, sub + "zarr.json")), None
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
        _, nested = list_objects(client, bucket, group, delimiter="/")
        sub_arrays: dict = {}
        _walk(client, bucket, group, nested, fmt, read, sub_arrays)
        prefix = group[len(root) :]
        arrays.update({prefix + n: a for n, a in sub_arrays.items()})


def read_zarr(client, bucket: str, prefix: str, contract: Contract, *, missing_ok: bool = False) -> dict | None:
    prefix = prefix_dir(prefix)
    where = location(bucket, prefix)
    objects, subdirs = list_objects(client, bucket, prefix, delimiter="/")
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
        doc = get_json(client, bucket, prefix + ".zmetadata", read, missing_ok=False)
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(meta, dict):
            raise ContractError(
                location(bucket, prefix + ".zmetadata"), "no 'metadata' object in consolidated metadata"
            )
        for key, value in meta.items():
            if key.endswith("/.zarray"):
                name = key[: -len("/.zarray")]
                arrays[name] = _array_v2(value, meta.get(f"{name}/.zattrs"), location(bucket, prefix + key))
    elif "zarr.json" in files:
        fmt = 3
        root = get_json(client, bucket, prefix + "zarr.json", read, missing_ok=False)
        if not isinstance(root, dict) or root.get("node_type") != "group":
            raise ContractError(location(bucket, prefix + "zarr.json"), "the root zarr.json is not a Zarr v3 group")
        cm = root.get("consolidated_metadata")
        if isinstance(cm, dict) and isinstance(cm.get("metadata"), dict):
            consolidated = True
            for name, meta in cm["metadata"].items():
                if isinstance(meta, dict) and meta.get("node_type") == "array":
                    arrays[name] = _array_v3(meta, location(bucket, prefix + "zarr.json"))
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

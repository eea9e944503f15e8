"""The demo dataset's update and validate jobs: a small Zarr v2 store per version.

``update`` writes the corn-stress index of the 30 days ending at the run's date
(``JobContext.as_of``: a backfill run of a past day writes that day; ``greenlight.dev.demo_data``) as a
consolidated Zarr v2 store at the version's own store path, with ``dataset_id`` and
``dataset_version`` in the group's ``.zattrs``. Version 0.3.0 and later add a ``stress_anomaly``
variable (the change a staged version is there to test). zarr-python is not in the lock: the
store is written with numpy and json exactly as zarr-python 2 writes it, like the other demo stores.

``validate`` reads the consolidated metadata back and checks the declared version, the dataset id
and the variables the version must have. Both accept an ``s3://`` store path (client from the job
context) or a local folder. Imported only when a task or the CLI runs the job (numpy).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

from greenlight.datasets.jobs import JobContext
from greenlight.storage.s3 import error_code, parse_s3_uri

BASE_VARIABLES = ("stress_index", "time", "lat", "lon")


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def expected_variables(version: str) -> tuple[str, ...]:
    extra = ("stress_anomaly",) if _version_tuple(version) >= (0, 3, 0) else ()
    return BASE_VARIABLES + extra


def build_store(dataset_id: str, version: str, as_of: dt.date) -> dict[str, tuple[bytes, str]]:
    """``{relative key: (body, content type)}`` of the version's store for ``as_of``."""
    # local: numpy + the zarr writer cost ~0.3 s to import; `greenlight datasets check` imports this
    # module only to find its callables
    import numpy as np

    from greenlight.dev.demo_zarr import corn_stress_arrays, zarr_v2_store

    data = corn_stress_arrays(as_of)
    nan = float("nan")
    arrays: dict[str, Any] = {
        "stress_index": (data["stress_index"], (10, 6, 8), nan, {"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]}),
        "time": (data["time"], (30,), 0, {"_ARRAY_DIMENSIONS": ["time"], "units": "days since 1970-01-01"}),
        "lat": (data["lat"], (len(data["lat"]),), nan, {"_ARRAY_DIMENSIONS": ["lat"]}),
        "lon": (data["lon"], (len(data["lon"]),), nan, {"_ARRAY_DIMENSIONS": ["lon"]}),
    }
    if "stress_anomaly" in expected_variables(version):
        stress = data["stress_index"]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # open-water cells are NaN on every day
            anomaly = (stress - np.nanmean(stress, axis=0, keepdims=True)).astype(np.float32)
        arrays["stress_anomaly"] = (anomaly, (10, 6, 8), nan, {"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]})
    attrs = {"dataset_id": dataset_id, "dataset_version": version, "as_of": as_of.isoformat()}
    return zarr_v2_store(arrays, attrs)


def _split(store_path: str) -> tuple[str, str]:
    uri = parse_s3_uri(store_path.rstrip("/") + "/", what="store path")
    return uri.bucket, uri.prefix


def update(ctx: JobContext) -> dict[str, Any]:
    """Write (or rewrite, idempotently) the version's store at ``ctx.store_path`` and nowhere else:
    the 30 days ending at the run's partition (``ctx.as_of``; today for a run outside a schedule)."""
    as_of = ctx.as_of or dt.datetime.now(dt.UTC).date()
    artefacts = build_store(ctx.dataset_id, ctx.version, as_of)
    if ctx.store_path.startswith("s3://"):
        # local: demo_data imports pandas and pyarrow (~1.2 s), only an S3 store needs its uploader
        from greenlight.dev.demo_data import seed_bucket

        bucket, prefix = _split(ctx.store_path)
        counts = seed_bucket(ctx.s3_client(), bucket, artefacts, prefix=prefix)
    else:
        root = Path(ctx.store_path)
        for rel, (body, _) in artefacts.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        counts = {"uploaded": len(artefacts), "unchanged": 0, "deleted": 0}
    return {"store_path": ctx.store_path, "objects": len(artefacts), "as_of": as_of.isoformat(), **counts}


def read_metadata(ctx: JobContext) -> dict[str, Any] | None:
    if ctx.store_path.startswith("s3://"):
        bucket, prefix = _split(ctx.store_path)
        try:
            body = ctx.s3_client().get_object(Bucket=bucket, Key=prefix + ".zmetadata")["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
    else:
        path = Path(ctx.store_path) / ".zmetadata"
        if not path.is_file():
            return None
        body = path.read_bytes()
    return json.loads(body)


def validate(ctx: JobContext) -> dict[str, Any]:
    """The store exists, declares this dataset and version, and has the version's variables."""
    doc = read_metadata(ctx)
    if doc is None:
        return {
            "passed": False,
            "reasons": [f"{ctx.store_path}: no consolidated metadata (.zmetadata): not written yet?"],
        }
    meta = doc.get("metadata") or {}
    attrs = meta.get(".zattrs") or {}
    reasons = []
    if attrs.get("dataset_version") != ctx.version:
        reasons.append(
            f"{ctx.store_path}: .zattrs dataset_version is {attrs.get('dataset_version')!r}, expected {ctx.version!r}"
        )
    if attrs.get("dataset_id") != ctx.dataset_id:
        reasons.append(
            f"{ctx.store_path}: .zattrs dataset_id is {attrs.get('dataset_id')!r}, expected {ctx.dataset_id!r}"
        )
    present = sorted({key.split("/")[0] for key in meta if key.endswith("/.zarray")})
    missing = [v for v in expected_variables(ctx.version) if v not in present]
    if missing:
        reasons.append(f"{ctx.store_path}: missing variables {missing} (present: {present})")
    return {"passed": not reasons, "reasons": reasons, "variables": present, "as_of": attrs.get("as_of")}

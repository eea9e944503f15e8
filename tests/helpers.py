"""Small helpers for tests that talk to the real S3 server."""

from __future__ import annotations

from pathlib import Path

import yaml


def put(client, bucket: str, key: str, body: bytes | str, **kwargs) -> str:
    """PUT an object; returns its VersionId (or '' when the bucket is unversioned)."""
    data = body.encode() if isinstance(body, str) else body
    return client.put_object(Bucket=bucket, Key=key, Body=data, **kwargs).get("VersionId", "")


def listing(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key -> (size, etag) of the current objects under a prefix (all pages)."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    return out


def versions(client, bucket: str, prefix: str) -> list[tuple[str, str, bool, bool]]:
    """Every version and delete marker under a prefix: (key, version id, is latest, is marker)."""
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in page.get("Versions", ())]
        out += [(m["Key"], m["VersionId"], m["IsLatest"], True) for m in page.get("DeleteMarkers", ())]
    return sorted(out)


def body(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def rel_listing(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """Like :func:`listing` with keys relative to the prefix, to compare two sides."""
    return {k[len(prefix) :]: v for k, v in listing(client, bucket, prefix).items()}


def write_config(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
